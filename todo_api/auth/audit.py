"""The audit trail of auth events: who, from where, what. Never a password or a token."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec

from todo_api.auth import queries
from todo_api.auth.tables import AuthEvent
from todo_api.core.identity import Client


async def record_event(
    event_type: str,
    client: Client,
    *,
    user_id: uuid.UUID | None = None,
    session_id: uuid.UUID | None = None,
    **detail: Any,
) -> None:
    """Append one event (in the current transaction, if any)."""
    await queries.record_event(
        event_type,
        user_id,
        session_id,
        client.ip,
        client.user_agent[:512],
        msgspec.json.encode(detail).decode(),
    )


async def purge_events(before: datetime) -> int:
    """Delete the events older than `before`; how many."""
    rows = await AuthEvent.delete().where(AuthEvent.created_at < before).returning(AuthEvent.id)
    return len(rows)
