"""The audit trail of auth events: who, from where, what. Never a password or a token."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import msgspec

from todo_api.auth import queries
from todo_api.auth.tables import AuthEvent
from todo_api.core.clock import now
from todo_api.core.config import parse_rate
from todo_api.core.errors import TooManyRequests
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


# Wrong passwords that count toward an account's limit: at sign-in, and when a signed-in caller
# re-enters it (password change, email change, account deletion) with a possibly stolen token.
PASSWORD_FAILURES = ("login_failed", "password_check_failed")


async def check_password_failures(user_id: uuid.UUID, rate: str, client: Client) -> None:
    """TooManyRequests (and a `rate_limited` event) once the account has had `rate` (e.g.
    '10/hour') wrong passwords, before another is checked: no online guessing, from any route."""
    limit, _, window = parse_rate(rate)
    failures = await AuthEvent.count().where(
        (AuthEvent.user_id == user_id)
        & (AuthEvent.created_at > now() - timedelta(seconds=window))
        & AuthEvent.type.is_in(list(PASSWORD_FAILURES))
    )
    if failures >= limit:
        await record_event("rate_limited", client, user_id=user_id, limit="login_failures")
        raise TooManyRequests(
            "Too many wrong passwords for this account; try again later.",
            headers={"Retry-After": str(window)},
        )


async def purge_events(before: datetime) -> int:
    """Delete the events older than `before`; how many."""
    rows = await AuthEvent.delete().where(AuthEvent.created_at < before).returning(AuthEvent.id)
    return len(rows)
