"""The rules for a user's to-dos. Every query is scoped to the owner, here and only here.

Writes use Piccolo's query builder. The three paginated reads use Piccolo's `raw()`: keyset
pagination needs row-value comparisons on sort expressions (`(coalesce(due_at, ...), id) > (...)`)
that the builder cannot express. Their SQL is assembled only from the constant fragments in this
module; every value goes in as a query parameter (S608 is silenced for that reason).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from todo_api.errors import BadRequest, Gone, NotFound, Unprocessable, VersionMismatch
from todo_api.pagination import Cursors, keyset_page
from todo_api.schemas import Page, PageMeta
from todo_api.todos.schemas import (
    ChangesPage,
    DeletedTodo,
    Sort,
    TodoChange,
    TodoCreate,
    TodoUpdate,
    representable,
)
from todo_api.todos.schemas import Todo as TodoOut
from todo_api.todos.tables import IdempotencyKey, Todo

IDEMPOTENCY_KEY_LIFETIME = timedelta(hours=24)
COLUMNS = (
    "id, title, notes, is_completed, completed_at, due_at, priority, position, "
    "created_at, updated_at, version"
)
OUT = (
    Todo.id,
    Todo.title,
    Todo.notes,
    Todo.is_completed,
    Todo.completed_at,
    Todo.due_at,
    Todo.priority,
    Todo.position,
    Todo.created_at,
    Todo.updated_at,
    Todo.version,
)
# Sort name -> (SQL expression, its type for casting a cursor value back). Never user text.
SORT_KEYS: dict[str, tuple[str, str]] = {
    "created_at": ("created_at", "timestamptz"),
    "due_at": ("coalesce(due_at, 'infinity'::timestamptz)", "timestamptz"),
    "priority": ("priority", "smallint"),
    "position": ("position", "double precision"),
}


@dataclass(frozen=True, slots=True)
class TodoFilter:
    completed: bool | None = None
    q: str | None = None
    due_before: datetime | None = None
    due_after: datetime | None = None
    sort: Sort = "created_at"


def etag(version: int) -> str:
    return f'"{version}"'


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _aware(moment: datetime | None, name: str) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        raise BadRequest(f"`{name}` needs a time zone (RFC 3339, e.g. 2030-01-31T09:00:00Z).")
    if not representable(moment):
        raise BadRequest(f"`{name}` is out of range.")
    return moment


class TodoService:
    """One user's to-dos: constructed for the caller, so ownership is enforced in one place."""

    def __init__(self, owner_id: uuid.UUID, cursors: Cursors, tombstone_retention: timedelta):
        self.owner_id = owner_id
        self.cursors = cursors
        self.tombstone_retention = tombstone_retention

    def _mine(self, todo_id: uuid.UUID) -> Any:
        return (Todo.id == todo_id) & (Todo.owner == self.owner_id)

    async def create(
        self, data: TodoCreate, idempotency_key: str | None = None
    ) -> tuple[TodoOut, bool]:
        """Create a to-do, once per Idempotency-Key: (todo, replayed)."""
        if idempotency_key is None:
            return await self._insert(data), False
        digest = hashlib.sha256(msgspec.json.encode(data)).hexdigest()
        async with Todo._meta.db.transaction():
            # A key older than its lifetime is taken over; a live one is left alone. Concurrent
            # retries wait here on the unique index until the first one commits.
            claimed = await IdempotencyKey.raw(
                "INSERT INTO idempotency_key (id, owner, key, request_hash, created_at) "
                "VALUES ({}, {}, {}, {}, now()) "
                "ON CONFLICT (owner, key) DO UPDATE SET id = EXCLUDED.id, "
                "request_hash = EXCLUDED.request_hash, created_at = now(), "
                "todo_id = NULL, response = NULL "
                "WHERE idempotency_key.created_at < now() - {}::interval "
                "RETURNING id",
                uuid.uuid4(),
                self.owner_id,
                idempotency_key,
                digest,
                IDEMPOTENCY_KEY_LIFETIME,
            )
            if claimed:
                todo = await self._insert(data)
                await IdempotencyKey.update(
                    {
                        IdempotencyKey.todo_id: todo.id,
                        IdempotencyKey.response: msgspec.json.encode(todo).decode(),
                    }
                ).where(IdempotencyKey.id == claimed[0]["id"])
                return todo, False
        first = await (
            IdempotencyKey.select(IdempotencyKey.request_hash, IdempotencyKey.response)
            .where(
                (IdempotencyKey.owner == self.owner_id) & (IdempotencyKey.key == idempotency_key)
            )
            .first()
        )
        if first is None or first["response"] is None:  # pragma: no cover - purged meanwhile
            raise Unprocessable("This Idempotency-Key is being used; retry shortly.")
        if first["request_hash"] != digest:
            raise Unprocessable("This Idempotency-Key was used with a different request body.")
        return msgspec.json.decode(first["response"], type=TodoOut), True

    async def _insert(self, data: TodoCreate) -> TodoOut:
        moment = datetime.now(UTC)
        rows = await Todo.insert(
            Todo(
                {
                    Todo.id: uuid.uuid4(),
                    Todo.owner: self.owner_id,
                    Todo.title: data.title.strip(),
                    Todo.notes: data.notes,
                    Todo.due_at: data.due_at,
                    Todo.priority: data.priority,
                    Todo.position: data.position,
                    Todo.created_at: moment,
                    Todo.updated_at: moment,
                }
            )
        ).returning(*OUT)
        return TodoOut(**rows[0])

    async def get(self, todo_id: uuid.UUID) -> TodoOut:
        row = await Todo.select(*OUT).where(self._mine(todo_id) & Todo.deleted_at.is_null()).first()
        if row is None:
            raise NotFound("No such to-do.")
        return TodoOut(**row)

    async def _write(
        self,
        todo_id: uuid.UUID,
        values: dict[Any, Any],
        expected_version: int | None,
        extra_where: Any = None,
    ) -> TodoOut | None:
        """Apply `values` (bumping the version) if the to-do is live, mine, and (with
        `expected_version`) unchanged since; None if `extra_where` did not hold."""
        where = self._mine(todo_id) & Todo.deleted_at.is_null()
        if expected_version is not None:
            where &= Todo.version == expected_version
        if extra_where is not None:
            where &= extra_where
        values = {**values, Todo.version: Todo.version + 1, Todo.updated_at: datetime.now(UTC)}
        rows = await Todo.update(values).where(where).returning(*OUT)
        if rows:
            return TodoOut(**rows[0])
        current = await self.get(todo_id)  # NotFound if absent, deleted or not mine
        if expected_version is not None and current.version != expected_version:
            raise VersionMismatch(
                "The to-do changed since you read it; fetch it and try again.",
                headers={"ETag": etag(current.version)},
            )
        return None

    async def update(
        self, todo_id: uuid.UUID, change: TodoUpdate, expected_version: int | None
    ) -> TodoOut:
        values: dict[Any, Any] = {}
        for field in change.__struct_fields__:
            value = getattr(change, field)
            if value is not msgspec.UNSET:
                values[getattr(Todo, field)] = value.strip() if field == "title" else value
        if not values:
            current = await self.get(todo_id)
            if expected_version is not None and current.version != expected_version:
                raise VersionMismatch(
                    "The to-do changed since you read it.", headers={"ETag": etag(current.version)}
                )
            return current
        todo = await self._write(todo_id, values, expected_version)
        assert todo is not None  # no extra condition, so a miss raised above
        return todo

    async def set_completed(
        self, todo_id: uuid.UUID, completed: bool, expected_version: int | None
    ) -> TodoOut:
        """Complete or reopen; doing it twice changes nothing (the first completed_at stays)."""
        values: dict[Any, Any] = {
            Todo.is_completed: completed,
            Todo.completed_at: datetime.now(UTC) if completed else None,
        }
        todo = await self._write(
            todo_id, values, expected_version, extra_where=Todo.is_completed != completed
        )
        return todo if todo is not None else await self.get(todo_id)

    async def delete(self, todo_id: uuid.UUID, expected_version: int | None) -> None:
        """Leave a tombstone, so other devices learn of the deletion at their next sync."""
        await self._write(todo_id, {Todo.deleted_at: datetime.now(UTC)}, expected_version)

    async def restore(self, todo_id: uuid.UUID) -> TodoOut:
        rows = await (
            Todo.update(
                {
                    Todo.deleted_at: None,
                    Todo.version: Todo.version + 1,
                    Todo.updated_at: datetime.now(UTC),
                }
            )
            .where(self._mine(todo_id) & Todo.deleted_at.is_not_null())
            .returning(*OUT)
        )
        if not rows:
            raise NotFound("No such to-do in the trash.")
        return TodoOut(**rows[0])

    async def list(self, filters: TodoFilter, limit: int, cursor: str | None) -> Page[TodoOut]:
        """Keyset pagination over a sort key and the id: stable while others insert and delete."""
        descending = filters.sort.startswith("-")
        expression, key_type = SORT_KEYS[filters.sort.lstrip("-")]
        scope = "todos:" + ":".join(
            str(part)
            for part in (
                self.owner_id,
                filters.sort,
                filters.completed,
                filters.q,
                _aware(filters.due_before, "due_before"),
                _aware(filters.due_after, "due_after"),
            )
        )
        clauses = ['"owner" = {}', "deleted_at IS NULL"]
        args: list[Any] = [self.owner_id]
        if filters.completed is not None:
            clauses.append("is_completed = {}")
            args.append(filters.completed)
        if filters.q:
            clauses.append("(title ILIKE {} OR notes ILIKE {})")
            args += [_like(filters.q)] * 2
        if filters.due_before is not None:
            clauses.append("due_at < {}")
            args.append(filters.due_before)
        if filters.due_after is not None:
            clauses.append("due_at > {}")
            args.append(filters.due_after)
        if cursor:
            key, last_id = self.cursors.decode(scope, cursor, 2)
            clauses.append(
                f"({expression}, id) {'<' if descending else '>'} "
                f"(CAST({{}}::text AS {key_type}), CAST({{}}::text AS uuid))"
            )
            args += [key, last_id]
        order = "DESC" if descending else "ASC"
        rows = await Todo.raw(
            f"SELECT {COLUMNS}, ({expression})::text AS sort_key FROM todo "  # noqa: S608
            f"WHERE {' AND '.join(clauses)} "
            f"ORDER BY {expression} {order}, id {order} LIMIT {limit + 1}",
            *args,
        )
        page, next_cursor = keyset_page(
            self.cursors, scope, rows, limit, lambda row: [row["sort_key"], str(row["id"])]
        )
        return Page(
            data=[TodoOut(**{k: v for k, v in row.items() if k != "sort_key"}) for row in page],
            meta=PageMeta(count=len(page), next_cursor=next_cursor),
        )

    async def trash(self, limit: int, cursor: str | None) -> Page[DeletedTodo]:
        """My deleted to-dos, most recently deleted first, until they are purged."""
        scope = f"trash:{self.owner_id}"
        clauses = ['"owner" = {}', "deleted_at IS NOT NULL"]
        args: list[Any] = [self.owner_id]
        if cursor:
            deleted_at, last_id = self.cursors.decode(scope, cursor, 2)
            clauses.append(
                "(deleted_at, id) < (CAST({}::text AS timestamptz), CAST({}::text AS uuid))"
            )
            args += [deleted_at, last_id]
        rows = await Todo.raw(
            f"SELECT {COLUMNS}, deleted_at FROM todo WHERE {' AND '.join(clauses)} "  # noqa: S608
            f"ORDER BY deleted_at DESC, id DESC LIMIT {limit + 1}",
            *args,
        )
        page, next_cursor = keyset_page(
            self.cursors,
            scope,
            rows,
            limit,
            lambda row: [row["deleted_at"].isoformat(), str(row["id"])],
        )
        return Page(
            data=[DeletedTodo(**row) for row in page],
            meta=PageMeta(count=len(page), next_cursor=next_cursor),
        )

    async def changes(self, since: str | None, limit: int, cursor: str | None) -> ChangesPage:
        """Delta sync: everything written since `since` (all live to-dos without it).

        Rows carry the id of the transaction that last wrote them. The token is the xmin of a
        snapshot taken before reading: every transaction below it had finished, and any still
        running then has an id at or above it, so a change committed while we read is found by
        the next sync (at worst twice, never not at all). Timestamps could not promise that.
        """
        token_scope, page_scope = f"sync:{self.owner_id}", f"sync-page:{self.owner_id}"
        position: tuple[int, str] | None = None
        if cursor:
            since_xid, token_xid, last_xid, last_id = self.cursors.decode(page_scope, cursor, 4)
            position = (int(last_xid), str(last_id))
        else:
            since_xid = int(self.cursors.decode(token_scope, since, 1)[0]) if since else None
            token_xid = await self._snapshot_xmin()
        if since_xid is not None and since_xid <= await self._purged_through():
            raise Gone(
                "Deletions since this sync token have been purged; sync again without `since` "
                "and replace your local copy."
            )
        clauses = ['"owner" = {}']
        args: list[Any] = [self.owner_id]
        if since_xid is None:
            clauses.append("deleted_at IS NULL")
        else:
            clauses.append("change_xid >= {}")
            args.append(since_xid)
        if position is not None:
            clauses.append("(change_xid, id) > ({}, CAST({}::text AS uuid))")
            args += list(position)
        rows = await Todo.raw(
            f"SELECT {COLUMNS}, deleted_at, change_xid FROM todo "  # noqa: S608
            f"WHERE {' AND '.join(clauses)} ORDER BY change_xid, id LIMIT {limit + 1}",
            *args,
        )
        page, more = rows[:limit], len(rows) > limit
        data = [
            TodoChange(
                **{k: v for k, v in row.items() if k != "change_xid"},
                deleted=row["deleted_at"] is not None,
            )
            for row in page
        ]
        if more:
            last = page[-1]
            next_cursor = self.cursors.encode(
                page_scope, [since_xid, token_xid, last["change_xid"], str(last["id"])]
            )
            return ChangesPage(
                data=data, meta=PageMeta(count=len(data), next_cursor=next_cursor), sync_token=None
            )
        return ChangesPage(
            data=data,
            meta=PageMeta(count=len(data)),
            sync_token=self.cursors.encode(token_scope, [token_xid]),
        )

    @staticmethod
    async def _snapshot_xmin() -> int:
        rows = await Todo.raw("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS x")
        return int(rows[0]["x"])

    @staticmethod
    async def _purged_through() -> int:
        rows = await Todo.raw("SELECT purged_through_xid FROM sync_horizon WHERE id = 1")
        return int(rows[0]["purged_through_xid"]) if rows else 0
