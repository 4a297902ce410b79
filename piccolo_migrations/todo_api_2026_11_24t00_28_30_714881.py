"""Indexes Piccolo's columns cannot express: partial and multi-column ones."""

from raw_sql import raw_sql_migration

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


forwards = raw_sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
