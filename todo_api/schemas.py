"""The base of every request/response Struct, and the list envelope every collection uses."""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

T = TypeVar("T")


class Schema(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Unknown fields are rejected; strings may not contain NUL (PostgreSQL cannot store it)."""

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if isinstance(value, str) and "\x00" in value:
                raise ValueError(f"`{name}` must not contain NUL characters")


class PageMeta(Schema):
    count: int
    next_cursor: str | None = None


class Page(Schema, Generic[T]):
    data: list[T]
    meta: PageMeta
