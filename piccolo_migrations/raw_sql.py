"""The one helper the raw-SQL migrations share. Not a migration itself (it has no ID).

Migrations import it by its bare name (Piccolo puts this folder on `sys.path` while it loads
them) and nothing from `todo_api`: an old migration must keep working however the application
code is refactored later. It needs only Piccolo and the engine `piccolo_conf.DB`.
"""

from collections.abc import Awaitable, Callable

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder


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
            engine = engine_finder()
            if engine is None:  # pragma: no cover - piccolo_conf always has DB
                raise RuntimeError("piccolo_conf.DB is not set")
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
