"""Query parameters shared by list endpoints, with the limits Litestar enforces (400 outside them).

Litestar checks bounds declared with its own `QueryParameter`; msgspec `Meta` on a handler
parameter would only be documented, not enforced.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from litestar.params import QueryParameter

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
DueBound = Annotated[datetime | None, QueryParameter(description="RFC 3339 with a time zone")]
