"""What Piccolo's columns cannot express for to-dos: the sync trigger, partial and
expression indexes, and the single sync-horizon row."""

from raw_sql import raw_sql_migration

ID = "2026-11-24T00:51:43:631702"
VERSION = "1.38.0"
DESCRIPTION = "todo indexes and sync trigger"

FORWARDS = [
    # Every write stamps the row with its transaction id (64-bit, never wraps): delta sync reads
    # changes by it, and a trigger also covers writes made outside the API (admin UI, SQL).
    """
    CREATE FUNCTION todo_stamp_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        NEW.change_xid := pg_current_xact_id()::text::bigint;
        RETURN NEW;
    END
    $$
    """,
    "CREATE TRIGGER todo_stamp_change BEFORE INSERT OR UPDATE ON todo "
    "FOR EACH ROW EXECUTE FUNCTION todo_stamp_change()",
    # A user's live list in each sort order (keyset pagination walks these).
    'CREATE INDEX todo_owner_created ON todo ("owner", created_at, id) WHERE deleted_at IS NULL',
    "CREATE INDEX todo_owner_due ON todo "
    "(\"owner\", (coalesce(due_at, 'infinity'::timestamptz)), id) WHERE deleted_at IS NULL",
    'CREATE INDEX todo_owner_priority ON todo ("owner", priority, id) WHERE deleted_at IS NULL',
    'CREATE INDEX todo_owner_position ON todo ("owner", position, id) WHERE deleted_at IS NULL',
    # Delta sync, and the trash.
    'CREATE INDEX todo_owner_change ON todo ("owner", change_xid, id)',
    'CREATE INDEX todo_owner_deleted ON todo ("owner", deleted_at, id) WHERE deleted_at IS NOT NULL',
    # Idempotency keys are per user; expired ones are purged by created_at.
    'CREATE UNIQUE INDEX idempotency_key_owner_key ON idempotency_key ("owner", key)',
    "CREATE INDEX idempotency_key_created ON idempotency_key (created_at)",
    "INSERT INTO sync_horizon (id, purged_through_xid) VALUES (1, 0)",
]
BACKWARDS = [
    "DELETE FROM sync_horizon",
    "DROP INDEX IF EXISTS idempotency_key_created",
    "DROP INDEX IF EXISTS idempotency_key_owner_key",
    "DROP INDEX IF EXISTS todo_owner_deleted",
    "DROP INDEX IF EXISTS todo_owner_change",
    "DROP INDEX IF EXISTS todo_owner_position",
    "DROP INDEX IF EXISTS todo_owner_priority",
    "DROP INDEX IF EXISTS todo_owner_due",
    "DROP INDEX IF EXISTS todo_owner_created",
    "DROP TRIGGER IF EXISTS todo_stamp_change ON todo",
    "DROP FUNCTION IF EXISTS todo_stamp_change()",
]


forwards = raw_sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
