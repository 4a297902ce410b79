"""auth's hot statements (refresh rotation, the audit insert, the per-request session check) as
named SQL, each with the one function that runs it and maps its rows (by column name)."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from todo_api.core import db

# A session's refresh state and its account's activity, in one round trip.
REFRESH_STATE = (
    'SELECT s."user", s.refresh_counter, s.refresh_salt, s.rotated_at, s.expires_at, '
    "s.last_used_at, s.revoked_at, u.is_active AS user_is_active "
    'FROM device_session s JOIN app_user u ON u.id = s."user" WHERE s.id = $1'
)
# Compare-and-set on the counter, and the `refreshed` audit event, in one statement.
ROTATE = (
    "WITH rotated AS (UPDATE device_session "
    "SET refresh_counter = refresh_counter + 1, rotated_at = $3, last_used_at = $3 "
    'WHERE id = $1 AND refresh_counter = $2 AND revoked_at IS NULL RETURNING "user", '
    "refresh_counter), "
    "logged AS (INSERT INTO auth_event (type, user_id, session_id, ip, user_agent, created_at) "
    "SELECT 'refreshed', \"user\", $1, $4, $5, $3 FROM rotated) "
    "SELECT refresh_counter FROM rotated"
)
# Refresh, login and logout each write one: the builder cost more than the insert itself.
RECORD_EVENT = (
    "INSERT INTO auth_event (type, user_id, session_id, ip, user_agent, detail) "
    "VALUES ($1, $2, $3, $4, $5, $6::jsonb)"
)
# The role and expiry of a live session of an active account (every authenticated request
# asks it when the live-session cache cannot answer).
LIVE_SESSION = (
    "SELECT u.role, s.expires_at FROM device_session s "
    'JOIN app_user u ON u.id = s."user" '
    'WHERE s.id = $1 AND s."user" = $2 AND s.revoked_at IS NULL AND s.expires_at > now() '
    "AND u.is_active"
)


class RefreshState(msgspec.Struct, frozen=True, kw_only=True):
    user_id: uuid.UUID
    refresh_counter: int
    refresh_salt: str
    rotated_at: datetime
    expires_at: datetime
    last_used_at: datetime
    revoked_at: datetime | None
    user_is_active: bool


class LiveSession(msgspec.Struct, frozen=True, kw_only=True):
    role: str
    expires_at: datetime


async def refresh_state(session_id: uuid.UUID) -> RefreshState | None:
    row = await db.fetchrow(REFRESH_STATE, session_id)
    if row is None:
        return None
    return RefreshState(
        user_id=row["user"],
        refresh_counter=row["refresh_counter"],
        refresh_salt=row["refresh_salt"],
        rotated_at=row["rotated_at"],
        expires_at=row["expires_at"],
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
        user_is_active=row["user_is_active"],
    )


async def rotate(
    session_id: uuid.UUID, counter: int, moment: datetime, ip: str, user_agent: str
) -> int | None:
    """The new counter if `counter` was still current (and the event is written), else None."""
    rotated: int | None = await db.fetchval(ROTATE, session_id, counter, moment, ip, user_agent)
    return rotated


async def record_event(
    event_type: str,
    user_id: uuid.UUID | None,
    session_id: uuid.UUID | None,
    ip: str,
    user_agent: str,
    detail: str,
) -> None:
    await db.fetchval(RECORD_EVENT, event_type, user_id, session_id, ip, user_agent, detail)


async def live_session(session_id: uuid.UUID, user_id: uuid.UUID) -> LiveSession | None:
    row = await db.fetchrow(LIVE_SESSION, session_id, user_id)
    return None if row is None else LiveSession(role=row["role"], expires_at=row["expires_at"])
