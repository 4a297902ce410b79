"""Keyset pagination: opaque, tamper-evident cursors bound to one list of one user."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import msgspec

from todo_api.core.errors import BadRequest

DEFAULT_LIMIT = 20
_MAC_BYTES = 16
_MAX_CURSOR_CHARS = 512
Row = TypeVar("Row")


def keyset_page(
    cursors: Cursors,
    scope: str,
    rows: Sequence[Row],
    limit: int,
    position: Callable[[Row], list[Any]],
) -> tuple[Sequence[Row], str | None]:
    """Of `limit + 1` fetched rows: the page, and a cursor past its last row if there is more."""
    page = rows[:limit]
    more = len(rows) > limit
    return page, cursors.encode(scope, position(page[-1])) if more else None


class Cursors:
    """Encode a row's sort key as a cursor, and decode only cursors we made for the same list."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def encode(self, scope: str, position: list[Any]) -> str:
        payload = msgspec.json.encode(position)
        mac = self._mac(scope, payload)
        return base64.urlsafe_b64encode(mac + payload).rstrip(b"=").decode()

    def decode(self, scope: str, cursor: str, size: int | None = None) -> list[Any]:
        """The position in `cursor` (`size` values); BadRequest if it is malformed, altered or
        from another list."""
        if len(cursor) > _MAX_CURSOR_CHARS:
            raise BadRequest("Invalid cursor.")
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (ValueError, TypeError):
            raise BadRequest("Invalid cursor.") from None
        mac, payload = raw[:_MAC_BYTES], raw[_MAC_BYTES:]
        if len(mac) != _MAC_BYTES or not hmac.compare_digest(mac, self._mac(scope, payload)):
            raise BadRequest("Invalid cursor.")
        position = msgspec.json.decode(payload)
        if not isinstance(position, list) or (size is not None and len(position) != size):
            raise BadRequest("Invalid cursor.")
        return position

    def _mac(self, scope: str, payload: bytes) -> bytes:
        return hmac.new(self._key, scope.encode() + b"\x00" + payload, hashlib.sha256).digest()[
            :_MAC_BYTES
        ]
