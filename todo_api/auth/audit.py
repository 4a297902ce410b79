"""The audit trail of auth events: who, from where, what. Never a password or a token."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from todo_api.auth.tables import AuthEvent


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
    await AuthEvent.insert(
        AuthEvent(
            {
                AuthEvent.type: event_type,
                AuthEvent.user_id: user_id,
                AuthEvent.session_id: session_id,
                AuthEvent.ip: client.ip,
                AuthEvent.user_agent: client.user_agent[:512],
                AuthEvent.detail: detail,
            }
        )
    )
