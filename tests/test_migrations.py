"""The migrations and the table classes describe the same schema, and run both ways."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from piccolo.apps.migrations.commands.backwards import run_backwards
from piccolo.apps.migrations.commands.forwards import run_forwards
from piccolo.apps.migrations.commands.new import AutoMigrationManager
from piccolo.conf.apps import Finder

from tests.conftest import with_database
from todo_api.core import db
from todo_api.piccolo_app import APP_CONFIG

pytestmark = pytest.mark.anyio

# Piccolo's own bookkeeping table, created by the first `forwards`.
MIGRATION_TABLE = "migration"


@pytest.fixture
async def empty_database(pg_admin_url: str) -> AsyncIterator[str]:
    """A database with nothing in it (not cloned from the migrated template)."""
    name = f"todo_empty_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(pg_admin_url, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def table_columns(url: str) -> dict[str, set[str]]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public'"
        )
    finally:
        await connection.close()
    columns: dict[str, set[str]] = {}
    for row in rows:
        columns.setdefault(row["table_name"], set()).add(row["column_name"])
    columns.pop(MIGRATION_TABLE, None)
    return columns


# Created by raw-SQL migrations, so the column comparison above cannot see them.
RAW_INDEXES = {
    "device_session_live_device_id",
    "auth_event_user_created",
    "todo_owner_created",
    "todo_owner_due",
    "todo_owner_priority",
    "todo_owner_position",
    "todo_owner_change",
    "todo_owner_deleted",
    "idempotency_key_owner_key",
    "idempotency_key_created",
}


async def raw_objects(url: str) -> set[str]:
    """The raw-SQL indexes and triggers present in the database at `url`."""
    connection = await asyncpg.connect(url)
    try:
        indexes = await connection.fetch(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'"
        )
        triggers = await connection.fetch("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
    finally:
        await connection.close()
    names = {row["indexname"] for row in indexes} | {row["tgname"] for row in triggers}
    return names & (RAW_INDEXES | {"todo_stamp_change"})


def declared_columns() -> dict[str, set[str]]:
    tables = [table for app in Finder().get_app_configs() for table in app.table_classes]
    return {
        table._meta.tablename: {column._meta.db_column_name for column in table._meta.columns}
        for table in tables
    }


async def test_the_table_classes_need_no_new_migration() -> None:
    statements = await AutoMigrationManager().get_alter_statements(app_config=APP_CONFIG)
    pending = [line for alter in statements for line in alter.statements]
    assert pending == [], "run `just makemigrations` and commit the result"


async def test_forwards_builds_exactly_the_declared_tables(empty_database: str) -> None:
    db.point_engine_at(empty_database)
    assert (await run_forwards(app_name="all")).success
    assert await table_columns(empty_database) == declared_columns()
    assert await raw_objects(empty_database) == RAW_INDEXES | {"todo_stamp_change"}


async def test_backwards_to_zero_and_forwards_again(empty_database: str) -> None:
    await db.migrate(empty_database)
    result = await run_backwards(app_name="all", auto_agree=True)
    assert result.success
    assert await table_columns(empty_database) == {}
    assert await raw_objects(empty_database) == set()

    await db.migrate(empty_database)
    assert await table_columns(empty_database) == declared_columns()
