"""NOTIFY todo_api_sessions when a session stops being live or an account's role or standing
changes, so every process's live-session cache (todo_api/auth/live_sessions.py) forgets it."""

from raw_sql import raw_sql_migration

ID = "2026-11-24T04:05:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "session change notifications"

FORWARDS = [
    """
    CREATE FUNCTION device_session_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('todo_api_sessions', 's:' || OLD.id::text);
        RETURN NULL;
    END
    $$
    """,
    # Refresh rotation updates the row on every refresh: only changes that can end the session
    # (or move it) are announced.
    "CREATE TRIGGER device_session_notify_update AFTER UPDATE ON device_session FOR EACH ROW "
    "WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at "
    "OR OLD.expires_at IS DISTINCT FROM NEW.expires_at "
    'OR OLD."user" IS DISTINCT FROM NEW."user" OR OLD.id IS DISTINCT FROM NEW.id) '
    "EXECUTE FUNCTION device_session_notify()",
    "CREATE TRIGGER device_session_notify_delete AFTER DELETE ON device_session FOR EACH ROW "
    "EXECUTE FUNCTION device_session_notify()",
    """
    CREATE FUNCTION app_user_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('todo_api_sessions', 'u:' || OLD.id::text);
        RETURN NULL;
    END
    $$
    """,
    "CREATE TRIGGER app_user_notify_update AFTER UPDATE ON app_user FOR EACH ROW "
    "WHEN (OLD.role IS DISTINCT FROM NEW.role OR OLD.is_active IS DISTINCT FROM NEW.is_active "
    "OR OLD.id IS DISTINCT FROM NEW.id) "
    "EXECUTE FUNCTION app_user_notify()",
    "CREATE TRIGGER app_user_notify_delete AFTER DELETE ON app_user FOR EACH ROW "
    "EXECUTE FUNCTION app_user_notify()",
]
BACKWARDS = [
    "DROP TRIGGER IF EXISTS app_user_notify_delete ON app_user",
    "DROP TRIGGER IF EXISTS app_user_notify_update ON app_user",
    "DROP FUNCTION IF EXISTS app_user_notify()",
    "DROP TRIGGER IF EXISTS device_session_notify_delete ON device_session",
    "DROP TRIGGER IF EXISTS device_session_notify_update ON device_session",
    "DROP FUNCTION IF EXISTS device_session_notify()",
]


forwards = raw_sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
