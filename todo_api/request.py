"""JSON request bodies decoded strictly into their msgspec Struct, straight from the bytes.

Litestar decodes a body to Python objects and then converts them with `strict=False`, which
turns "2" into 2 and 1893456000 into a date. Our contract is that a wrong type is a 400, so
`StrictRequest.json()` decodes the bytes with msgspec into the handler's declared Struct
(strict, and one pass instead of two); Litestar's conversion then passes the Struct through.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import ValidationException


class StrictRequest(Request[Any, Any, Any]):
    async def json(self) -> Any:
        field = self.route_handler.parsed_data_field
        target = field.annotation if field is not None else None
        if not (isinstance(target, type) and issubclass(target, msgspec.Struct)):
            return await super().json()
        body = await self.body()
        try:
            return msgspec.json.decode(body, type=target)
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
