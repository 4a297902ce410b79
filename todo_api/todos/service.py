"""The rules for a user's to-dos. Every query is scoped to the owner, here and only here.

The hot paths run the named statements of todos/queries.py; the rest (idempotency keys, the
trash, purges) use Piccolo's query builder.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta

import msgspec

from todo_api.core import db
from todo_api.core.clock import now
from todo_api.core.errors import BadRequest, Gone, NotFound, Unprocessable, VersionMismatch
from todo_api.core.pagination import Cursors, keyset_page
from todo_api.core.schemas import Page, PageMeta
from todo_api.todos import queries, tables
from todo_api.todos.schemas import (
    ChangesPage,
    DeletedTodo,
    Todo,
    TodoCreate,
    TodoFilter,
    TodoUpdate,
    representable,
)

IDEMPOTENCY_KEY_LIFETIME = timedelta(hours=24)
STALE = "The to-do changed since you read it; fetch it and try again."


def etag(version: int) -> str:
    return f'"{version}"'


def _aware(moment: datetime | None, name: str) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        raise BadRequest(f"`{name}` needs a time zone (RFC 3339, e.g. 2030-01-31T09:00:00Z).")
    if not representable(moment):
        raise BadRequest(f"`{name}` is out of range.")
    return moment


class TodoService:
    """One user's to-dos: constructed for the caller, so ownership is enforced in one place."""

    def __init__(self, owner_id: uuid.UUID, cursors: Cursors) -> None:
        self.owner_id = owner_id
        self.cursors = cursors

    async def create(
        self, data: TodoCreate, idempotency_key: str | None = None
    ) -> tuple[Todo, bool]:
        """Create a to-do, once per Idempotency-Key: (todo, replayed)."""
        if idempotency_key is None:
            return await self._insert(data), False
        digest = hashlib.sha256(msgspec.json.encode(data)).hexdigest()
        keys = tables.IdempotencyKey
        async with db.transaction():
            # A key older than its lifetime is taken over; a live one is left alone. Concurrent
            # retries wait here on the unique index until the first one commits.
            moment = now()
            claimed = await (
                keys.insert(
                    keys(
                        {
                            keys.id: uuid.uuid4(),
                            keys.owner: self.owner_id,
                            keys.key: idempotency_key,
                            keys.request_hash: digest,
                            keys.created_at: moment,
                        }
                    )
                )
                .on_conflict(
                    target=(keys.owner, keys.key),
                    action="DO UPDATE",
                    values=[
                        keys.id,
                        keys.request_hash,
                        (keys.created_at, moment),
                        (keys.todo_id, None),
                        (keys.response, None),
                    ],
                    where=keys.created_at < moment - IDEMPOTENCY_KEY_LIFETIME,
                )
                .returning(keys.id)
            )
            if claimed:
                todo = await self._insert(data)
                await keys.update(
                    {keys.todo_id: todo.id, keys.response: msgspec.json.encode(todo).decode()}
                ).where(keys.id == claimed[0]["id"])
                return todo, False
        first = await (
            keys.select(keys.request_hash, keys.response)
            .where((keys.owner == self.owner_id) & (keys.key == idempotency_key))
            .first()
        )
        if first is None or first["response"] is None:  # pragma: no cover - purged meanwhile
            raise Unprocessable("This Idempotency-Key is being used; retry shortly.")
        if first["request_hash"] != digest:
            raise Unprocessable("This Idempotency-Key was used with a different request body.")
        return msgspec.json.decode(first["response"], type=Todo), True

    async def _insert(self, data: TodoCreate) -> Todo:
        return await queries.insert(
            self.owner_id,
            now(),
            title=data.title.strip(),
            notes=data.notes,
            due_at=data.due_at,
            priority=data.priority,
            position=data.position,
        )

    async def get(self, todo_id: uuid.UUID) -> Todo:
        todo = await queries.get(todo_id, self.owner_id)
        if todo is None:
            raise NotFound("No such to-do.")
        return todo

    async def _write(
        self,
        todo_id: uuid.UUID,
        values: dict[str, object],
        expected_version: int | None,
        *,
        completed: bool | None = None,
        only_if: queries.Only | None = None,
    ) -> Todo | None:
        """Apply `values` and `completed` (bumping the version) if the to-do is live, mine, and
        (with `expected_version`) unchanged since; None if it was not in state `only_if`."""
        todo = await queries.update(
            todo_id,
            self.owner_id,
            now(),
            values,
            completed=completed,
            expected_version=expected_version,
            only_if=only_if,
        )
        if todo is not None:
            return todo
        current = await self.get(todo_id)  # NotFound if absent, deleted or not mine
        self._check_version(current, expected_version)
        return None

    @staticmethod
    def _check_version(current: Todo, expected_version: int | None) -> None:
        if expected_version is not None and current.version != expected_version:
            raise VersionMismatch(STALE, headers={"ETag": etag(current.version)})

    async def update(
        self, todo_id: uuid.UUID, change: TodoUpdate, expected_version: int | None
    ) -> Todo:
        """A partial change; `is_completed` follows the rules of `set_completed`."""
        values: dict[str, object] = {}
        for field in change.__struct_fields__:
            value = getattr(change, field)
            if value is not msgspec.UNSET and field != "is_completed":
                values[field] = value.strip() if field == "title" else value
        completed = None if change.is_completed is msgspec.UNSET else change.is_completed
        if not values:
            if completed is not None:
                return await self.set_completed(todo_id, completed, expected_version)
            current = await self.get(todo_id)
            self._check_version(current, expected_version)
            return current
        todo = await self._write(todo_id, values, expected_version, completed=completed)
        assert todo is not None  # no state condition, so a miss raised above
        return todo

    async def set_completed(
        self, todo_id: uuid.UUID, completed: bool, expected_version: int | None
    ) -> Todo:
        """Complete or reopen; doing it twice changes nothing (the first completed_at stays)."""
        only_if: queries.Only = "open" if completed else "done"
        todo = await self._write(
            todo_id, {}, expected_version, completed=completed, only_if=only_if
        )
        return todo if todo is not None else await self.get(todo_id)

    async def delete(self, todo_id: uuid.UUID, expected_version: int | None) -> None:
        """Leave a tombstone, so other devices learn of the deletion at their next sync."""
        await self._write(todo_id, {"deleted_at": now()}, expected_version)

    async def restore(self, todo_id: uuid.UUID) -> Todo:
        todo = await queries.restore(todo_id, self.owner_id, now())
        if todo is None:
            raise NotFound("No such to-do in the trash.")
        return todo

    async def list(self, filters: TodoFilter, limit: int, cursor: str | None) -> Page[Todo]:
        """Keyset pagination over a sort key and the id: stable while others insert and delete."""
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
        after = None
        if cursor:
            key, last_id = self.cursors.decode(scope, cursor, 2)
            after = (key, last_id)
        rows = await queries.list_page(self.owner_id, filters, after, limit + 1)
        page, next_cursor = keyset_page(
            self.cursors, scope, rows, limit, lambda row: [row[1], str(row[0].id)]
        )
        return Page(
            data=[todo for todo, _ in page],
            meta=PageMeta(count=len(page), next_cursor=next_cursor),
        )

    async def trash(self, limit: int, cursor: str | None) -> Page[DeletedTodo]:
        """My deleted to-dos, most recently deleted first, until they are purged."""
        scope = f"trash:{self.owner_id}"
        todo = tables.Todo
        where = (todo.owner == self.owner_id) & todo.deleted_at.is_not_null()
        if cursor:
            deleted_at, last_id = self.cursors.decode(scope, cursor, 2)
            at = datetime.fromisoformat(deleted_at)
            where &= (todo.deleted_at < at) | (
                (todo.deleted_at == at) & (todo.id < uuid.UUID(last_id))
            )
        columns = [todo._meta.get_column_by_name(name) for name in DeletedTodo.__struct_fields__]
        rows = await (
            todo.select(*columns)
            .where(where)
            .order_by(todo.deleted_at, todo.id, ascending=False)
            .limit(limit + 1)
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
        after: tuple[int, str] | None = None
        token_xid: int | None = None
        if cursor:
            since_xid, token_xid, last_xid, last_id = self.cursors.decode(page_scope, cursor, 4)
            after = (int(last_xid), str(last_id))
        else:
            since_xid = int(self.cursors.decode(token_scope, since, 1)[0]) if since else None
        snapshot_xid, purged, rows = await queries.changes(
            self.owner_id, since_xid, after, limit + 1
        )
        if since_xid is not None and since_xid <= purged:
            raise Gone(
                "Deletions since this sync token have been purged; sync again without `since` "
                "and replace your local copy."
            )
        if token_xid is None:
            token_xid = snapshot_xid
        page, more = rows[:limit], len(rows) > limit
        data = [change for change, _ in page]
        if more:
            last, last_xid = page[-1]
            next_cursor = self.cursors.encode(
                page_scope, [since_xid, token_xid, last_xid, str(last.id)]
            )
            return ChangesPage(
                data=data, meta=PageMeta(count=len(data), next_cursor=next_cursor), sync_token=None
            )
        return ChangesPage(
            data=data,
            meta=PageMeta(count=len(data)),
            sync_token=self.cursors.encode(token_scope, [token_xid]),
        )


async def purge_tombstones(retention: timedelta) -> int:
    """Delete to-dos deleted longer than `retention` ago, and move the sync horizon past them
    (a sync token at or below the newest purged deletion may have missed it: 410 for it)."""
    todo = tables.Todo
    rows = await todo.delete().where(todo.deleted_at < now() - retention).returning(todo.change_xid)
    if rows:
        newest = max(row["change_xid"] for row in rows)
        horizon = tables.SyncHorizon
        await horizon.update({horizon.purged_through_xid: newest}).where(
            (horizon.id == 1) & (horizon.purged_through_xid < newest)
        )
    return len(rows)


async def purge_idempotency_keys() -> int:
    """Delete the Idempotency-Keys past their lifetime."""
    keys = tables.IdempotencyKey
    rows = await (
        keys.delete().where(keys.created_at < now() - IDEMPOTENCY_KEY_LIFETIME).returning(keys.id)
    )
    return len(rows)
