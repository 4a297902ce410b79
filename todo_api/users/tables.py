"""The account table."""

from __future__ import annotations

from piccolo.columns import UUID, Boolean, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table


class User(Table, tablename="app_user"):
    """An account. Emails are stored lower-cased, so the unique index is case-insensitive."""

    id = UUID(primary_key=True)
    email = Varchar(length=320, unique=True)
    username = Varchar(length=50, unique=True, null=True, default=None)
    display_name = Varchar(length=100, default="")
    # secret: Piccolo admin and Piccolo's serialisers never show it.
    password_hash = Varchar(length=255, secret=True)
    role = Varchar(length=20, default="user", index=True)
    is_active = Boolean(default=True)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
    password_changed_at = Timestamptz(default=TimestamptzNow())
    last_login_at = Timestamptz(null=True, default=None)
