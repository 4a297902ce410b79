"""The base of every request/response Struct, and the list envelope every collection uses."""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

T = TypeVar("T")

# Patterns run twice: in Python's `re` when msgspec checks a request, and as ECMA-262 regexes in
# clients and JSON Schema tools reading the published schema. Write out what the two read
# differently: `\s` (Python's also matches U+001C..U+001F and U+0085, ECMA-262's also U+FEFF)
# and `$` (Python's also matches before a final newline).
SPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
END = r"$(?!\n)"
# Unicode's format characters (category Cf) in the Basic Multilingual Plane: zero-width spaces
# and joiners, direction marks and overrides, the soft hyphen... They show nothing, so text made
# of them only looks blank, and an address containing them looks like another.
INVISIBLE = (
    r"\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f"
    r"\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
)
# ASCII and C1 control characters.
CONTROL = r"\x00-\x1f\x7f-\x9f"


class Schema(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Unknown fields are rejected; strings may not contain NUL (PostgreSQL cannot store it)."""

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if isinstance(value, str) and "\x00" in value:
                raise ValueError(f"`{name}` must not contain NUL characters")


class Output(msgspec.Struct):
    """The base of a response Struct that hot paths build from stored rows: positionally (a
    row's columns in field order, much faster than keywords), and without Schema's input
    checks (PostgreSQL cannot hold NUL anyway)."""


class PageMeta(Schema):
    count: int
    next_cursor: str | None = None


class Page(Schema, Generic[T]):
    data: list[T]
    meta: PageMeta
