"""Request and response shapes of /api/v1/todos."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from todo_api.core.schemas import INVISIBLE, SPACE, Output, PageMeta, Schema

# `pattern` is a search: at least one visible character, so a blank title (spaces, or only
# invisible format characters) is refused.
Title = Annotated[str, Meta(min_length=1, max_length=500, pattern=f"[^{SPACE}{INVISIBLE}]")]
Notes = Annotated[str, Meta(max_length=10_000)]
Priority = Annotated[
    int,
    Meta(
        ge=0,
        le=3,
        description="0 none, 1 low, 2 medium, 3 high",
        # Litestar 2.x copies the bounds of a union (`Priority | UnsetType`) into OpenAPI only
        # when they are truthy, so `ge=0` alone would not be published; it reads "extra" as
        # schema fields to set.
        extra_json_schema={"extra": {"minimum": 0}},
    ),
]
DueAt = Annotated[datetime, Meta(tz=True, description="RFC 3339 with a time zone")]
Position = Annotated[float, Meta(ge=-1e15, le=1e15, description="Manual order (ascending)")]
Sort = Literal[
    "created_at",
    "-created_at",
    "due_at",
    "-due_at",
    "priority",
    "-priority",
    "position",
    "-position",
]


# The ends of Python's calendar are excluded: asyncpg stores them as -infinity/infinity.
EARLIEST, LATEST = datetime(1, 1, 2, tzinfo=UTC), datetime(9999, 12, 30, tzinfo=UTC)


def representable(moment: datetime | None) -> bool:
    """Whether `moment` is an ordinary instant we can store and give back unchanged."""
    if moment is None:
        return True
    try:
        return EARLIEST <= moment.astimezone(UTC) <= LATEST
    except OverflowError:  # e.g. 0001-01-01T00:00+14:00 does not exist in UTC
        return False


class TodoCreate(Schema):
    title: Title
    notes: Notes = ""
    due_at: DueAt | None = None
    priority: Priority = 0
    position: Position = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not representable(self.due_at):
            raise ValueError("`due_at` is out of range")


class TodoUpdate(Schema):
    """Partial update: an absent field is unchanged; `null` clears a nullable one."""

    title: Title | msgspec.UnsetType = msgspec.UNSET
    notes: Notes | msgspec.UnsetType = msgspec.UNSET
    due_at: DueAt | msgspec.UnsetType | None = msgspec.UNSET
    priority: Priority | msgspec.UnsetType = msgspec.UNSET
    position: Position | msgspec.UnsetType = msgspec.UNSET
    is_completed: (
        Annotated[
            bool,
            Meta(description="true completes it (completed_at is set once), false reopens it"),
        ]
        | msgspec.UnsetType
    ) = msgspec.UNSET

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.due_at, datetime) and not representable(self.due_at):
            raise ValueError("`due_at` is out of range")


class TodoFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Which of my to-dos a list shows, and in which order."""

    completed: bool | None = None
    q: str | None = None
    due_before: datetime | None = None
    due_after: datetime | None = None
    sort: Sort = "created_at"


class Todo(Output):
    """Built by todos/queries.py from rows whose columns are these fields, in this order."""

    id: uuid.UUID
    title: str
    notes: str
    is_completed: bool
    completed_at: datetime | None
    due_at: datetime | None
    priority: int
    position: float
    created_at: datetime
    updated_at: datetime
    version: int


class DeletedTodo(Todo, kw_only=True):
    deleted_at: datetime


class TodoChange(Todo, kw_only=True):
    """A change for delta sync: the current state, or a tombstone (`deleted: true`)."""

    deleted: bool
    deleted_at: datetime | None


class TodoPage(Schema):
    data: list[Todo]
    meta: PageMeta


class ChangesPage(Schema):
    data: list[TodoChange]
    meta: PageMeta
    sync_token: Annotated[
        str | None,
        Meta(description="On the last page: pass it as `since` next time (null while more pages)"),
    ]
