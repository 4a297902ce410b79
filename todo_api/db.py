"""The database: Piccolo's engine, its asyncpg pool for the app's lifetime, readiness, migrations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder
from piccolo.engine.postgres import PostgresEngine

from todo_api.config import Settings

# Raised when the server is down, restarting, refusing connections or too slow to answer.
DATABASE_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionFailureError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InterfaceError,
)


class Engine(PostgresEngine):
    """Piccolo's PostgresEngine without its connect-on-construction version check.

    Piccolo's engine queries the server when `piccolo_conf` is imported; we connect only in the app
    lifespan (or a CLI command), and fail fast there instead of printing a warning and carrying on.
    """

    async def check_version(self) -> None:
        return None

    async def prep_database(self) -> None:
        return None


def get_engine() -> PostgresEngine:
    engine = engine_finder()
    if not isinstance(engine, PostgresEngine):  # pragma: no cover - piccolo_conf is ours
        raise RuntimeError("piccolo_conf.DB must be a PostgresEngine")
    return engine


def point_engine_at(database_url: str) -> PostgresEngine:
    """Aim the process-wide Piccolo engine (the tables are bound to it) at `database_url`."""
    engine = get_engine()
    engine.config = {"dsn": database_url}
    return engine


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


async def fetchval(sql: str, *args: Any) -> Any:
    """One value from a prepared statement run straight on the engine's pool: the escape hatch
    for hot paths where Piccolo's query building is measurable (asyncpg caches the statement
    per connection). Outside any Piccolo transaction."""
    pool: Any = get_engine().pool
    if pool is None:  # pragma: no cover - only outside the app's lifespan
        raise RuntimeError("the connection pool is not open")
    return await pool.fetchval(sql, *args)


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


def raw_sql_migration(
    migration_id: str, description: str, forwards: list[str], backwards: list[str]
) -> Callable[[], Awaitable[MigrationManager]]:
    """A migration's `forwards` for SQL Piccolo's columns cannot express (triggers, partial and
    expression indexes): runs `forwards` in order, and `backwards` when migrating back."""

    async def build() -> MigrationManager:
        manager = MigrationManager(
            migration_id=migration_id, app_name="todo_api", description=description
        )

        async def run(statements: list[str]) -> None:
            engine = get_engine()
            for statement in statements:
                await engine.run_ddl(statement)

        async def apply() -> None:
            await run(forwards)

        async def revert() -> None:
            await run(backwards)

        manager.add_raw(apply)
        manager.add_raw_backwards(revert)
        return manager

    return build


async def migrate(database_url: str) -> None:
    """Apply every pending Piccolo migration to `database_url`."""
    from piccolo.apps.migrations.commands.forwards import run_forwards

    point_engine_at(database_url)
    result = await run_forwards(app_name="all")
    if not result.success:
        raise RuntimeError(f"migrations failed: {result.message}")
