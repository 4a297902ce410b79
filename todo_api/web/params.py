"""Query parameters shared by list endpoints, with the limits Litestar enforces (400 outside them).

Litestar checks bounds declared with its own `QueryParameter`; msgspec `Meta` on a handler
parameter would only be documented, not enforced.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from litestar.openapi.spec import OpenAPIFormat
from litestar.params import QueryParameter

from todo_api.core.errors import BadRequest

MAX_CURSOR_LENGTH = 512

Limit = Annotated[
    int, QueryParameter(ge=1, le=100, description="Items per page (1-100, default 20)")
]
Cursor = Annotated[
    str | None,
    QueryParameter(
        max_length=MAX_CURSOR_LENGTH,
        description="`meta.next_cursor` of the previous page",
    ),
]
SearchText = Annotated[
    str | None,
    QueryParameter(min_length=1, max_length=100, pattern=r"^[^\x00]*$", description="Search text"),
]
# A string, read by `moment`: Litestar converts query values leniently and would take a number
# for a Unix time (`?due_before=0.5`).
DueBound = Annotated[
    str | None,
    QueryParameter(format=OpenAPIFormat.DATE_TIME, description="RFC 3339 with a time zone"),
]

_Aware = Annotated[datetime, msgspec.Meta(tz=True)]


def moment(value: str | None, name: str) -> datetime | None:
    """The date-time a query parameter names, strictly RFC 3339."""
    if value is None:
        return None
    try:
        return msgspec.convert(value, _Aware, strict=True)
    except msgspec.ValidationError:
        raise BadRequest(
            f"`{name}` must be an RFC 3339 date-time with a time zone, e.g. 2030-01-31T09:00:00Z."
        ) from None
