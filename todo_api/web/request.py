"""JSON request bodies decoded strictly into their msgspec Struct, straight from the bytes.

Litestar decodes a body to Python objects and then converts them with `strict=False`, which
turns "2" into 2 and 1893456000 into a date. Our contract is that a wrong type is a 400, so
`StrictRequest.json()` decodes the bytes with msgspec into the handler's declared Struct
(strict, and one pass instead of two); Litestar's conversion then passes the Struct through.
Strict, except that a number with no fractional part (`3.0`, `1e2`) is an integer, as in JSON
Schema: clients whose JSON encoder writes floats (`json.dumps(3.0)`) get what they meant.

A body that does not say it is JSON is refused with 415 before it is read: Litestar decodes JSON
whatever the Content-Type, so a plain HTML form (`enctype="text/plain"`) could post a JSON-shaped
body from another page (CSRF), since forms are not preflighted.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import HTTPException, ValidationException


class StrictRequest(Request[Any, Any, Any]):
    async def json(self) -> Any:
        field = self.route_handler.parsed_data_field
        target = field.annotation if field is not None else None
        if not (isinstance(target, type) and issubclass(target, msgspec.Struct)):
            return await super().json()
        if not is_json(self.content_type[0]):
            raise HTTPException(
                status_code=HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                detail="The body must be JSON, sent with Content-Type: application/json.",
            )
        body = await self.body()
        try:
            return _decode(body, target)
        except msgspec.ValidationError as exc:
            raise ValidationException(
                detail=f"Validation failed for {self.method} {self.url.path}",
                extra=[{"message": str(exc), "key": "data", "source": "body"}],
            ) from None
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise ValidationException(
                detail="The request body is not valid JSON.",
                extra=[{"message": str(exc), "key": "data", "source": "body"}],
            ) from None


# Methods that change something: a browser must not be made to send them from another site.
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def is_json(media_type: str) -> bool:
    """application/json, or a JSON-based type (`application/problem+json`, ...)."""
    media_type = media_type.lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def _decode(body: bytes, target: type[msgspec.Struct]) -> Any:
    try:
        return msgspec.json.decode(body, type=target)
    except msgspec.ValidationError as exc:
        # msgspec takes `3.0` for a float, which an int field refuses: then try once more with
        # the whole numbers as integers (on this error path only: valid bodies decode once).
        if "got `float`" not in str(exc):
            raise
        try:
            whole = msgspec.json.encode(_integral_floats_as_ints(msgspec.json.decode(body)))
        except RecursionError:  # nested too deep to rewrite: the first answer stands
            raise exc from None
        return msgspec.json.decode(whole, type=target)


def _integral_floats_as_ints(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integral_floats_as_ints(item) for item in value]
    if isinstance(value, dict):
        return {key: _integral_floats_as_ints(item) for key, item in value.items()}
    return value
