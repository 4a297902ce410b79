"""Indexes Piccolo's columns cannot express: partial and multi-column ones."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder

ID = "2026-11-24T00:28:30:714881"
VERSION = "1.38.0"
DESCRIPTION = "auth indexes"

FORWARDS = [
    # At most one live session per client-generated device id.
    'CREATE UNIQUE INDEX device_session_live_device_id ON device_session ("user", device_id) '
    "WHERE revoked_at IS NULL AND device_id IS NOT NULL",
    # "My events, newest first" and the failed-login count per account.
    "CREATE INDEX auth_event_user_created ON auth_event (user_id, created_at DESC, id DESC)",
]
BACKWARDS = [
    "DROP INDEX IF EXISTS auth_event_user_created",
    "DROP INDEX IF EXISTS device_session_live_device_id",
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="todo_api", description=DESCRIPTION)
    engine = engine_finder()

    async def create() -> None:
        for statement in FORWARDS:
            await engine.run_ddl(statement)

    async def drop() -> None:
        for statement in BACKWARDS:
            await engine.run_ddl(statement)

    manager.add_raw(create)
    manager.add_raw_backwards(drop)
    return manager
