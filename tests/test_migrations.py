"""The migrations and the table classes describe the same schema, and run both ways."""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Iterator
from types import ModuleType

import asyncpg
import pytest
from piccolo.apps.migrations.commands.backwards import run_backwards
from piccolo.apps.migrations.commands.forwards import run_forwards
from piccolo.apps.migrations.commands.new import AutoMigrationManager
from piccolo.conf.apps import Finder

from tests.support.cli import REPO_ROOT
from tests.support.database import new_database
from todo_api.core import db
from todo_api.piccolo_app import APP_CONFIG

pytestmark = pytest.mark.anyio

# Piccolo's own bookkeeping table, created by the first `forwards`.
MIGRATION_TABLE = "migration"


@pytest.fixture
def empty_database(pg_admin_url: str) -> Iterator[str]:
    """A database with nothing in it (not cloned from the migrated template)."""
    with new_database(pg_admin_url, "todo_empty") as url:
        yield url


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


# Raw-SQL migrations create what Piccolo's columns cannot express, so the column comparison
# above cannot see it: each keeps its statements in FORWARDS (and BACKWARDS).
MIGRATIONS = REPO_ROOT / "piccolo_migrations"
CREATED = re.compile(
    r"\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:UNIQUE\s+)?(INDEX|TRIGGER|FUNCTION)\s+"
    r"(?:CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?(\w+)",
    re.IGNORECASE,
)


def raw_sql_migrations() -> list[ModuleType]:
    """The migrations with SQL of their own, loaded as Piccolo loads them (their folder on
    sys.path, for their `raw_sql` helper)."""
    modules = []
    sys.path.insert(0, str(MIGRATIONS))
    try:
        for path in sorted(MIGRATIONS.glob("*.py")):
            spec = importlib.util.spec_from_file_location(f"_migration_{path.stem}", path)
            assert spec is not None
            assert spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            if hasattr(module, "FORWARDS"):
                modules.append(module)
    finally:
        sys.path.remove(str(MIGRATIONS))
    return modules


def declared_raw_objects() -> set[tuple[str, str]]:
    """(kind, name) of every index, trigger and function the raw-SQL migrations create."""
    created = set()
    for module in raw_sql_migrations():
        for statement in module.FORWARDS:
            if not re.match(r"\s*CREATE\b", statement, re.IGNORECASE):
                continue
            match = CREATED.match(statement)
            assert match, f"{module.ID}: teach this test what this creates: {statement[:80]!r}"
            created.add((match.group(1).lower(), match.group(2)))
    return created


def declared_column_indexes() -> set[str]:
    """The indexes Piccolo creates for columns declared with `index=True`."""
    return {
        table._get_index_name([column._meta.db_column_name])
        for app in Finder().get_app_configs()
        for table in app.table_classes
        for column in table._meta.columns
        if column._meta.index
    }


async def raw_objects(url: str) -> set[tuple[str, str]]:
    """(kind, name) of the indexes, triggers and functions in the database at `url` that are
    not a table's constraints or column indexes, which Piccolo makes."""
    connection = await asyncpg.connect(url)
    try:
        indexes = await connection.fetch(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relnamespace = 'public'::regnamespace "
            "AND NOT EXISTS (SELECT FROM pg_constraint WHERE conindid = i.indexrelid)"
        )
        triggers = await connection.fetch("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
        functions = await connection.fetch(
            "SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace"
        )
    finally:
        await connection.close()
    column_indexes = declared_column_indexes()
    return (
        {("index", row["relname"]) for row in indexes if row["relname"] not in column_indexes}
        | {("trigger", row["tgname"]) for row in triggers}
        | {("function", row["proname"]) for row in functions}
    )


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
    declared = declared_raw_objects()
    assert {kind for kind, _ in declared} == {"index", "trigger", "function"}
    assert await raw_objects(empty_database) == declared


async def test_backwards_to_zero_and_forwards_again(empty_database: str) -> None:
    await db.migrate(empty_database)
    result = await run_backwards(app_name="all", auto_agree=True)
    assert result.success
    assert await table_columns(empty_database) == {}
    assert await raw_objects(empty_database) == set()

    await db.migrate(empty_database)
    assert await table_columns(empty_database) == declared_columns()
