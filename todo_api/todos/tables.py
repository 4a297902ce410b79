"""To-dos, the keys that make creation idempotent, and how far tombstones have been purged."""

from __future__ import annotations

from piccolo.columns import (
    JSONB,
    UUID,
    BigInt,
    Boolean,
    DoublePrecision,
    ForeignKey,
    Integer,
    OnDelete,
    SmallInt,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from todo_api.users.tables import User


class Todo(Table, tablename="todo"):
    """A to-do. Deleting sets `deleted_at` (a tombstone other devices sync) until purged.

    `change_xid` is set by a trigger to the writing transaction's id on every insert and update:
    delta sync orders by it (see todos/service.py).
    """

    id = UUID(primary_key=True)
    owner = ForeignKey(references=User, on_delete=OnDelete.cascade, null=False)
    title = Varchar(length=500)
    notes = Text(default="")
    is_completed = Boolean(default=False)
    completed_at = Timestamptz(null=True, default=None)
    due_at = Timestamptz(null=True, default=None)
    priority = SmallInt(default=0)
    position = DoublePrecision(default=0.0)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
    version = Integer(default=1)
    deleted_at = Timestamptz(null=True, default=None)
    change_xid = BigInt(default=0)


class IdempotencyKey(Table, tablename="idempotency_key"):
    """The first response to a POST /todos carrying an Idempotency-Key, replayed to retries."""

    id = UUID(primary_key=True)
    owner = ForeignKey(references=User, on_delete=OnDelete.cascade, null=False)
    key = Varchar(length=255)
    request_hash = Varchar(length=64)
    todo_id = UUID(null=True, default=None)
    response = JSONB(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class SyncHorizon(Table, tablename="sync_horizon"):
    """One row: tombstones written by transactions up to `purged_through_xid` are gone, so a
    sync token at or below it may have missed deletions (410 Gone)."""

    id = Integer(primary_key=True)
    purged_through_xid = BigInt(default=0)
