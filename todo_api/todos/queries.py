"""The to-do hot paths as named SQL (create, get, update/complete/delete, restore, list, delta
sync), each with the one function that runs it and maps its rows.

Prepared statements through `core.db` rather than Piccolo's query builder: building the SQL was
a measurable share of each request's CPU under `just bench` (README, Benchmarks). The paginated
reads also need row-value comparisons on sort expressions (`(coalesce(due_at, ...), id) > (...)`)
that the builder cannot express. Statements are assembled only from the constant fragments in
this module; every value is a query parameter (S608 is silenced for that reason).

Rows become Structs positionally (a row's columns in field order: much faster than keywords on
the list path); this module is the only code that knows the column order, and
tests/test_todos.py guards it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from asyncpg import Record

from todo_api.core import db
from todo_api.todos import tables
from todo_api.todos.schemas import Todo, TodoChange, TodoFilter

# A to-do as the API shows it: Todo's fields, in order.
COLUMNS = ", ".join(Todo.__struct_fields__)
# Delta sync's columns: TodoChange's but `deleted` (derived from deleted_at), in order.
SYNC_COLUMNS = f"{COLUMNS}, deleted_at"
# The columns an update may set (a TodoUpdate field or a deletion): never user text.
UPDATABLE = frozenset(("title", "notes", "due_at", "priority", "position", "deleted_at"))
# The completion rule, the one place it is written: a to-do that becomes complete gets its
# completed_at once (completing it again keeps the first), and reopening clears it.
COMPLETION = (
    "is_completed = {completed}, "
    "completed_at = CASE WHEN {completed} THEN coalesce(completed_at, $3) ELSE NULL END"
)
# Sort name -> (SQL expression, its type for casting a cursor value back). Never user text.
SORT_KEYS: dict[str, tuple[str, str]] = {
    "created_at": ("created_at", "timestamptz"),
    "due_at": ("coalesce(due_at, 'infinity'::timestamptz)", "timestamptz"),
    "priority": ("priority", "smallint"),
    "position": ("position", "double precision"),
}
# An update that applies only in one state (completing an open to-do, reopening a done one).
ONLY_IF = {"open": "NOT is_completed", "done": "is_completed"}
Only = Literal["open", "done"]


def _sql_type(column: str) -> str:
    sql_type: str = tables.Todo._meta.get_column_by_name(column).column_type
    return sql_type


# The first row of a delta sync's answer: its snapshot's xmin and the tombstone purge horizon,
# padded with typed NULLs to the page rows' shape.
SYNC_HORIZON = (
    "SELECT 0 AS kind, pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS change_xid, "  # noqa: S608
    "coalesce((SELECT purged_through_xid FROM sync_horizon WHERE id = 1), 0) AS purged, "
    + ", ".join(f"NULL::{_sql_type(name)} AS {name}" for name in SYNC_COLUMNS.split(", "))
)
INSERT = (
    "INSERT INTO todo (id, owner, title, notes, due_at, priority, position, created_at, "  # noqa: S608
    f"updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING {COLUMNS}"
)
GET = (
    f"SELECT {COLUMNS} FROM todo "  # noqa: S608
    'WHERE id = $1 AND "owner" = $2 AND deleted_at IS NULL'
)
RESTORE = (
    "UPDATE todo SET deleted_at = NULL, version = version + 1, updated_at = $3 "  # noqa: S608
    f'WHERE id = $1 AND "owner" = $2 AND deleted_at IS NOT NULL RETURNING {COLUMNS}'
)


def todo_from_row(row: Record) -> Todo:
    """A row of COLUMNS (more columns may follow; they are ignored)."""
    return Todo(*row[: len(Todo.__struct_fields__)])


async def insert(
    owner_id: uuid.UUID,
    moment: datetime,
    *,
    title: str,
    notes: str,
    due_at: datetime | None,
    priority: int,
    position: float,
) -> Todo:
    row = await db.fetchrow(
        INSERT, uuid.uuid4(), owner_id, title, notes, due_at, priority, position, moment
    )
    assert row is not None  # INSERT ... RETURNING gives its row
    return todo_from_row(row)


async def get(todo_id: uuid.UUID, owner_id: uuid.UUID) -> Todo | None:
    row = await db.fetchrow(GET, todo_id, owner_id)
    return None if row is None else todo_from_row(row)


async def update(
    todo_id: uuid.UUID,
    owner_id: uuid.UUID,
    moment: datetime,
    values: dict[str, Any],
    *,
    completed: bool | None = None,
    expected_version: int | None = None,
    only_if: Only | None = None,
) -> Todo | None:
    """Set `values` (column -> value), complete or reopen it (`completed`), and bump the version
    of a live to-do of `owner_id`, if it has `expected_version` and is in state `only_if`; None
    if no row matched."""
    args: list[Any] = [todo_id, owner_id, moment]
    assignments = ["version = version + 1", "updated_at = $3"]
    for column, value in values.items():
        if column not in UPDATABLE:  # pragma: no cover - callers pass constants
            raise ValueError(f"not an updatable column: {column!r}")
        args.append(value)
        assignments.append(f"{column} = ${len(args)}")
    if completed is not None:
        args.append(completed)
        assignments.append(COMPLETION.format(completed=f"${len(args)}::boolean"))
    where = 'id = $1 AND "owner" = $2 AND deleted_at IS NULL'
    if expected_version is not None:
        args.append(expected_version)
        where += f" AND version = ${len(args)}"
    if only_if is not None:
        where += f" AND {ONLY_IF[only_if]}"
    row = await db.fetchrow(
        f"UPDATE todo SET {', '.join(assignments)} WHERE {where} "  # noqa: S608
        f"RETURNING {COLUMNS}",
        *args,
    )
    return None if row is None else todo_from_row(row)


async def restore(todo_id: uuid.UUID, owner_id: uuid.UUID, moment: datetime) -> Todo | None:
    row = await db.fetchrow(RESTORE, todo_id, owner_id, moment)
    return None if row is None else todo_from_row(row)


async def list_page(
    owner_id: uuid.UUID, filters: TodoFilter, after: tuple[str, str] | None, limit: int
) -> list[tuple[Todo, str]]:
    """Up to `limit` live to-dos of `owner_id` matching `filters`, in their sort order, after
    the position `after` (sort key as text, id); each with its sort key as text."""
    descending = filters.sort.startswith("-")
    expression, key_type = SORT_KEYS[filters.sort.lstrip("-")]
    clauses = ['"owner" = $1', "deleted_at IS NULL"]
    args: list[Any] = [owner_id]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if filters.completed is not None:
        clauses.append(f"is_completed = {arg(filters.completed)}")
    if filters.q:
        pattern = arg(db.like_pattern(filters.q))
        clauses.append(f"(title ILIKE {pattern} OR notes ILIKE {pattern})")
    if filters.due_before is not None:
        clauses.append(f"due_at < {arg(filters.due_before)}")
    if filters.due_after is not None:
        clauses.append(f"due_at > {arg(filters.due_after)}")
    if after is not None:
        key, last_id = after
        clauses.append(
            f"({expression}, id) {'<' if descending else '>'} "
            f"(CAST({arg(key)}::text AS {key_type}), CAST({arg(last_id)}::text AS uuid))"
        )
    order = "DESC" if descending else "ASC"
    rows = await db.fetch(
        f"SELECT {COLUMNS}, ({expression})::text AS sort_key FROM todo "  # noqa: S608
        f"WHERE {' AND '.join(clauses)} "
        f"ORDER BY {expression} {order}, id {order} LIMIT {arg(limit)}",
        *args,
    )
    return [(todo_from_row(row), row["sort_key"]) for row in rows]


async def changes(
    owner_id: uuid.UUID, since_xid: int | None, after: tuple[int, str] | None, limit: int
) -> tuple[int, int, list[tuple[TodoChange, int]]]:
    """Delta sync's page: (the snapshot's xmin, the purge horizon, up to `limit` changes of
    `owner_id` written at or after `since_xid` (every live to-do without it), in write order
    after `after` (change xid, id), each with its change xid).

    One round trip: the horizon row comes first (kind 0), then the page (kind 1). Within one
    statement every part reads the same snapshot, so its xmin is the token: "taken before
    reading" holds exactly, and the tombstone horizon is read in the same snapshot too."""
    clauses = ['"owner" = $1']
    args: list[Any] = [owner_id]
    if since_xid is None:
        clauses.append("deleted_at IS NULL")
    else:
        args.append(since_xid)
        clauses.append(f"change_xid >= ${len(args)}")
    if after is not None:
        args += list(after)
        clauses.append(f"(change_xid, id) > (${len(args) - 1}, CAST(${len(args)}::text AS uuid))")
    args.append(limit)
    records = await db.fetch(
        f"{SYNC_HORIZON} UNION ALL (SELECT 1, change_xid, NULL, {SYNC_COLUMNS} "  # noqa: S608
        f"FROM todo WHERE {' AND '.join(clauses)} ORDER BY change_xid, id LIMIT ${len(args)}) "
        "ORDER BY kind, change_xid, id",
        *args,
    )
    horizon, rows = records[0], records[1:]
    # Each page row is kind, change_xid, purged, then SYNC_COLUMNS.
    page = [
        (
            TodoChange(
                *row[3:-1], deleted=row["deleted_at"] is not None, deleted_at=row["deleted_at"]
            ),
            row["change_xid"],
        )
        for row in rows
    ]
    return horizon["change_xid"], horizon["purged"], page
