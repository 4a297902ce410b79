"""The database: Piccolo's engine and its pool, the one spelling of a transaction and of an
advisory lock, prepared statements for the hot paths, readiness, migrations.

How features reach PostgreSQL (one rule): Piccolo's query builder by default. A statement that a
profile showed to be hot lives as a named SQL constant in `<feature>/queries.py`, next to the one
function that turns its rows into a Struct, and runs through `fetch`/`fetchrow`/`fetchval` here.
Services never assemble SQL strings; `Table.raw` only where the builder cannot say it (with the
reason at the call).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import Token
from typing import Any

import asyncpg
from piccolo.engine.finder import engine_finder
from piccolo.engine.postgres import PostgresEngine, PostgresTransaction

from todo_api.core.config import Settings

# Raised when the server is down, restarting, refusing connections or too slow to answer.
DATABASE_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.ConnectionFailureError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InterfaceError,
    # What asyncpg raises when a backend dies under an operation in progress.
    asyncpg.exceptions.InternalClientError,
    # SQLSTATE class 57: the backend was terminated or shut down, cannot accept connections yet,
    # or cancelled the statement (statement_timeout).
    asyncpg.exceptions.OperatorInterventionError,
    # lock_timeout: another transaction holds the row; retrying later is the answer.
    asyncpg.exceptions.LockNotAvailableError,
)


# Waiting longer than this for a free pooled connection is a 503, not a hang.
ACQUIRE_TIMEOUT_SECONDS = 5.0


class SafeTransaction(PostgresTransaction):
    """Piccolo's transaction, except that its connection always goes back to the pool.

    Piccolo releases the connection only after a successful COMMIT/ROLLBACK (and not at all if
    BEGIN fails): when the backend dies mid-transaction (pg_terminate_backend, a restart) the
    connection leaked, the pool shrank, and closing the pool at shutdown waited forever.
    Also runs the callbacks registered with `on_commit` once its COMMIT succeeded.
    """

    after_commit: list[Callable[[], None]]
    context: Token[PostgresTransaction | None]

    async def __aenter__(self) -> PostgresTransaction:
        if self._parent is not None:
            return self._parent
        self.after_commit = []
        self.connection = await self.get_connection()  # type: ignore[no-untyped-call]
        try:
            self.transaction = self.connection.transaction()
            await self.begin()  # type: ignore[no-untyped-call]
        except BaseException:
            await self._give_back()
            raise
        self.context = self.engine.current_transaction.set(self)
        return self

    async def __aexit__(self, exception_type: Any, exception: Any, traceback: Any) -> bool:
        if self._parent:
            return exception is None
        try:
            if exception:
                if not self._rolled_back:
                    await self.rollback()  # type: ignore[no-untyped-call]
            elif not self._committed and not self._rolled_back:
                await self.commit()  # type: ignore[no-untyped-call]
        finally:
            self.engine.current_transaction.reset(self.context)
            await self._give_back()
        if exception is None and self._committed:
            for callback in self.after_commit:
                callback()
        return exception is None

    async def _give_back(self) -> None:
        if self.engine.pool:
            await self.engine.pool.release(self.connection)
        else:
            await self.connection.close()


class Engine(PostgresEngine):
    """Piccolo's PostgresEngine without its connect-on-construction version check.

    Piccolo's engine queries the server when `piccolo_conf` is imported; we connect only in the app
    lifespan (or a CLI command), and fail fast there instead of printing a warning and carrying on.
    """

    async def check_version(self) -> None:
        return None

    async def prep_database(self) -> None:
        return None

    def transaction(self, allow_nested: bool = True) -> PostgresTransaction:
        return SafeTransaction(engine=self, allow_nested=allow_nested)


@functools.cache
def get_engine() -> PostgresEngine:
    """piccolo_conf's engine: one per process (the tables are bound to it), so looked up once
    (Piccolo's `engine_finder` imports piccolo_conf anew on every call)."""
    engine = engine_finder()
    if not isinstance(engine, PostgresEngine):  # pragma: no cover - piccolo_conf is ours
        raise RuntimeError("piccolo_conf.DB must be a PostgresEngine")
    return engine


def transaction() -> PostgresTransaction:
    """`async with db.transaction():` the one way to group statements (nested blocks join the
    outer one)."""
    return get_engine().transaction()


def on_commit(callback: Callable[[], None]) -> None:
    """Run `callback` once the current transaction has committed (at once outside one)."""
    current = get_engine().current_transaction.get()
    if isinstance(current, SafeTransaction):
        current.after_commit.append(callback)
    else:
        callback()


def lock_id(key: str) -> int:
    """The 64-bit advisory lock id for the lock named `key`, the same in every process."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)


async def advisory_xact_lock(key: str) -> None:
    """Wait for the transaction-scoped advisory lock named `key` (released at COMMIT/ROLLBACK)."""
    await fetchval("SELECT pg_advisory_xact_lock($1)", lock_id(key))


async def try_advisory_xact_lock(key: str) -> bool:
    """Take the transaction-scoped advisory lock named `key` if nobody holds it."""
    taken: bool = await fetchval("SELECT pg_try_advisory_xact_lock($1)", lock_id(key))
    return taken


def like_pattern(text: str) -> str:
    """A LIKE/ILIKE pattern matching `text` anywhere, its wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def point_engine_at(database_url: str) -> PostgresEngine:
    """Aim the process-wide Piccolo engine (the tables are bound to it) at `database_url`."""
    engine = get_engine()
    engine.config = {"dsn": database_url}
    return engine


async def keep_session_state(_: asyncpg.Connection) -> None:
    """What a connection needs on its way back to the pool, beyond asyncpg's own rollback of an
    open transaction: nothing. asyncpg's default sends `SELECT pg_advisory_unlock_all(); CLOSE
    ALL; UNLISTEN *; RESET ALL` (one more round trip per release, on every request); the app
    never leaves session state behind: its advisory locks are transaction-scoped
    (`pg_advisory_xact_lock`), it declares no cursors and sets nothing per session (the
    timeouts are the pool's `server_settings`), and the LISTEN connection is not pooled."""


def transaction_timeout(milliseconds: int) -> Callable[[asyncpg.Connection], Awaitable[None]]:
    """A pooled connection's set-up: PostgreSQL 17's `transaction_timeout` where the server has
    it (older servers refuse the setting, so it cannot go in `server_settings`)."""

    async def init(connection: asyncpg.Connection) -> None:
        if connection.get_server_version().major >= 17:
            await connection.execute(f"SET transaction_timeout = {int(milliseconds)}")

    return init


@asynccontextmanager
async def connection_pool(settings: Settings) -> AsyncIterator[PostgresEngine]:
    """Open the engine's pool for the app's lifetime; fail start-up if the database is absent."""
    engine = point_engine_at(settings.database_url)
    await engine.start_connection_pool(
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        timeout=settings.db_timeout_seconds,
        # Connections sitting idle are closed so a restarted server is not met with dead sockets.
        max_inactive_connection_lifetime=60.0,
        reset=keep_session_state,
        init=transaction_timeout(settings.db_transaction_timeout_ms),
        server_settings={
            "statement_timeout": str(settings.db_statement_timeout_ms),
            "lock_timeout": str(settings.db_lock_timeout_ms),
            "idle_in_transaction_session_timeout": str(settings.db_idle_in_transaction_timeout_ms),
            "application_name": "todo-api",
        },
    )
    try:
        yield engine
    finally:
        await engine.close_connection_pool()


# The escape hatch for hot paths where Piccolo's query building is measurable (see README,
# Benchmarks): prepared statements run straight
# on asyncpg (it caches each statement per connection), inside the current Piccolo transaction
# if there is one, else on a pooled connection. Rows are asyncpg Records (mapping access).


def _transaction_connection() -> asyncpg.Connection | None:
    transaction = get_engine().current_transaction.get()
    return None if transaction is None else transaction.connection


def _pool() -> asyncpg.Pool:
    pool: asyncpg.Pool | None = get_engine().pool
    if pool is None:  # pragma: no cover - only outside the app's lifespan
        raise RuntimeError("the connection pool is not open")
    return pool


async def fetch(sql: str, *args: Any) -> list[asyncpg.Record]:
    """Every row of a prepared statement."""
    rows: list[asyncpg.Record]
    if (connection := _transaction_connection()) is not None:
        rows = await connection.fetch(sql, *args)
        return rows
    async with _pool().acquire(timeout=ACQUIRE_TIMEOUT_SECONDS) as pooled:
        rows = await pooled.fetch(sql, *args)
        return rows


async def fetchrow(sql: str, *args: Any) -> asyncpg.Record | None:
    """The first row of a prepared statement, or None."""
    if (connection := _transaction_connection()) is not None:
        return await connection.fetchrow(sql, *args)
    async with _pool().acquire(timeout=ACQUIRE_TIMEOUT_SECONDS) as pooled:
        return await pooled.fetchrow(sql, *args)


async def fetchval(sql: str, *args: Any) -> Any:
    """The first value of the first row of a prepared statement, or None."""
    if (connection := _transaction_connection()) is not None:
        return await connection.fetchval(sql, *args)
    async with _pool().acquire(timeout=ACQUIRE_TIMEOUT_SECONDS) as pooled:
        return await pooled.fetchval(sql, *args)


async def check_database(seconds: float) -> None:
    """Raise one of DATABASE_UNAVAILABLE unless the database answers a trivial query in time."""
    engine = get_engine()
    async with asyncio.timeout(seconds):
        await engine.run_ddl("SELECT 1")


async def forget_broken_connections() -> None:
    """After a connection error, make the pool replace every connection on next use."""
    pool: Any = get_engine().pool
    if pool is not None:
        await pool.expire_connections()


async def migrate(database_url: str) -> None:
    """Apply every pending Piccolo migration to `database_url`."""
    from piccolo.apps.migrations.commands.forwards import run_forwards

    point_engine_at(database_url)
    result = await run_forwards(app_name="all")
    if not result.success:
        raise RuntimeError(f"migrations failed: {result.message}")


async def migrate_down(database_url: str, steps: int) -> list[str]:
    """Reverse the last `steps` applied migrations of todo_api's tables; their ids, newest first."""
    from piccolo.apps.migrations.commands.backwards import run_backwards
    from piccolo.apps.migrations.tables import Migration

    point_engine_at(database_url)
    applied: list[str] = await Migration.get_migrations_which_ran(app_name="todo_api")
    if steps < 1 or not applied:
        return []
    undone = applied[-steps:]
    result = await run_backwards(app_name="todo_api", migration_id=undone[0], auto_agree=True)
    if not result.success:
        raise RuntimeError(f"migrating back failed: {result.message}")
    return list(reversed(undone))
