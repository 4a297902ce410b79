"""The audit trail of auth events: who, from where, what. Never a password or a token."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import msgspec

from todo_api.core import db

# A prepared statement rather than Piccolo's insert: refresh, login and logout all write one
# (Piccolo's builder cost more than the insert itself; see README, Benchmarks).
RECORD_SQL = (
    "INSERT INTO auth_event (type, user_id, session_id, ip, user_agent, detail) "
    "VALUES ($1, $2, $3, $4, $5, $6::jsonb)"
)


@dataclass(frozen=True, slots=True)
class Client:
    """Where a request came from, as far as we can trust it."""

    ip: str
    user_agent: str


async def record(
    event_type: str,
    client: Client,
    *,
    user_id: uuid.UUID | None = None,
    session_id: uuid.UUID | None = None,
    **detail: Any,
) -> None:
    await db.fetchval(
        RECORD_SQL,
        event_type,
        user_id,
        session_id,
        client.ip,
        client.user_agent[:512],
        msgspec.json.encode(detail).decode(),
    )
