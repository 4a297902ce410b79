"""The Piccolo app: our tables, and their migrations in the top-level piccolo_migrations/."""

from __future__ import annotations

from pathlib import Path

from piccolo.conf.apps import AppConfig, table_finder

MIGRATIONS_FOLDER = Path(__file__).resolve().parent.parent / "piccolo_migrations"

APP_CONFIG = AppConfig(
    app_name="todo_api",
    migrations_folder_path=str(MIGRATIONS_FOLDER),
    table_classes=table_finder(
        ["todo_api.users.tables", "todo_api.auth.tables", "todo_api.todos.tables"],
        exclude_imported=True,
    ),
    migration_dependencies=[],
    commands=[],
)
