"""Device sessions (one per logged-in device) and the append-only audit log of auth events."""

from __future__ import annotations

from piccolo.columns import (
    JSONB,
    UUID,
    ForeignKey,
    Integer,
    OnDelete,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from todo_api.users.tables import User


class DeviceSession(Table, tablename="device_session"):
    """A logged-in device. The refresh token is derived from (id, refresh_counter, refresh_salt),
    so the row never holds a usable token."""

    id = UUID(primary_key=True)
    user = ForeignKey(references=User, on_delete=OnDelete.cascade, index=True, null=False)
    device_name = Varchar(length=100)
    device_id = Varchar(length=128, null=True, default=None)
    platform = Varchar(length=50, null=True, default=None)
    app_version = Varchar(length=50, null=True, default=None)
    user_agent = Varchar(length=512, default="")
    ip = Varchar(length=64, default="")
    created_at = Timestamptz(default=TimestamptzNow())
    last_used_at = Timestamptz(default=TimestamptzNow())
    expires_at = Timestamptz()
    refresh_counter = Integer(default=0)
    # secret: the admin and Piccolo's serialisers never show it.
    refresh_salt = Varchar(length=64, secret=True)
    rotated_at = Timestamptz(default=TimestamptzNow())
    revoked_at = Timestamptz(null=True, default=None)
    revoke_reason = Varchar(length=40, null=True, default=None)


class AuthEvent(Table, tablename="auth_event"):
    """One security-relevant event. Never holds a password or a token."""

    id = UUID(primary_key=True)
    # No foreign keys: the trail outlives purged sessions and deleted accounts.
    user_id = UUID(null=True, default=None)
    session_id = UUID(null=True, default=None)
    type = Varchar(length=40)
    ip = Varchar(length=64, default="")
    user_agent = Varchar(length=512, default="")
    created_at = Timestamptz(default=TimestamptzNow())
    detail = JSONB(default={})
