"""Device sessions: the one way to end them, which of them are live, and their purge."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import msgspec
from piccolo.custom_types import Combinable

from todo_api.auth.audit import record_event
from todo_api.auth.live_sessions import sessions_changed
from todo_api.auth.queries import RefreshState
from todo_api.auth.tables import DeviceSession
from todo_api.core import db
from todo_api.core.clock import now
from todo_api.core.config import Settings
from todo_api.core.identity import Client

# Dead sessions are kept this long so a replayed refresh token still finds its (revoked) session.
DEAD_SESSION_RETENTION = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class AuditAs:
    """The audit event that ending sessions writes. `session_id` is the acting session, for
    events that end all of a user's sessions (`count` is added to their detail)."""

    type: str
    client: Client
    session_id: uuid.UUID | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


class Ended(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    user_id: uuid.UUID
    device_name: str


async def end_sessions(
    reason: str,
    *,
    user_id: uuid.UUID | None = None,
    session_id: uuid.UUID | None = None,
    keep: uuid.UUID | None = None,
    device_id: str | None = None,
    audit: AuditAs | None = None,
) -> list[Ended]:
    """End the live sessions that match (one session, or a user's, but `keep`): mark them
    revoked with `reason`, tell this process's session cache once committed (other processes
    hear it by NOTIFY), and write `audit` (for one session: only if it was live). Returns them."""
    if user_id is None and session_id is None:
        raise ValueError("end_sessions needs a user or a session")
    where: Combinable = DeviceSession.revoked_at.is_null()
    if user_id is not None:
        where &= DeviceSession.user == user_id
    if session_id is not None:
        where &= DeviceSession.id == session_id
    if keep is not None:
        where &= DeviceSession.id != keep
    if device_id is not None:
        where &= DeviceSession.device_id == device_id
    rows = await (
        DeviceSession.update({DeviceSession.revoked_at: now(), DeviceSession.revoke_reason: reason})
        .where(where)
        .returning(DeviceSession.id, DeviceSession.user, DeviceSession.device_name)
    )
    ended = [
        Ended(id=row["id"], user_id=row["user"], device_name=row["device_name"]) for row in rows
    ]
    if ended:
        db.on_commit(sessions_changed)
    if audit is not None and (ended or session_id is None):
        detail = dict(audit.detail)
        if session_id is None:
            detail["count"] = len(ended)
        await record_event(
            audit.type,
            audit.client,
            user_id=user_id if user_id is not None else ended[0].user_id,
            session_id=session_id if session_id is not None else audit.session_id,
            **detail,
        )
    return ended


async def session_exists(session_id: uuid.UUID) -> bool:
    exists: bool = await DeviceSession.exists().where(DeviceSession.id == session_id)
    return exists


# A live session: not revoked, and within both its absolute and its idle lifetime. The same
# rule twice, as a query condition and for a session's refresh state already read.


def live(settings: Settings, moment: datetime) -> Combinable:
    idle = timedelta(days=settings.refresh_token_expire_days)
    return (
        DeviceSession.revoked_at.is_null()
        & (DeviceSession.expires_at > moment)
        & (DeviceSession.last_used_at > moment - idle)
    )


def is_live(state: RefreshState, settings: Settings, moment: datetime) -> bool:
    """`live`, for a state already read; and its account must be active."""
    idle = timedelta(days=settings.refresh_token_expire_days)
    return (
        state.revoked_at is None
        and state.expires_at > moment
        and state.last_used_at > moment - idle
        and state.user_is_active
    )


async def purge_dead_sessions(settings: Settings, moment: datetime) -> int:
    """Delete sessions dead for longer than DEAD_SESSION_RETENTION; how many."""
    cutoff = moment - DEAD_SESSION_RETENTION
    idle_cutoff = cutoff - timedelta(days=settings.refresh_token_expire_days)
    rows = await (
        DeviceSession.delete()
        .where(
            (DeviceSession.revoked_at < cutoff)
            | (DeviceSession.expires_at < cutoff)
            | (DeviceSession.last_used_at < idle_cutoff)
        )
        .returning(DeviceSession.id)
    )
    return len(rows)
