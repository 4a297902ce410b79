"""The live-session cache (todo_api/auth/live_sessions.py): a revocation made anywhere reaches
every process within a second, and the cache fails closed while its listener is down.

"Another process" here is another PostgreSQL connection writing the row, as the admin, the CLI
or a second `serve` process would (tests/test_chaos.py also runs two real `serve` processes).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from tests.support.accounts import new_user, token_refused
from tests.support.waiting import seconds_until
from todo_api.auth.live_sessions import LiveSessions
from todo_api.core import db
from todo_api.core.config import load_settings

pytestmark = pytest.mark.anyio

ME = "/api/v1/users/me"
LISTENER = "application_name = 'todo-api-sessions' AND datname = current_database()"


async def listener_pids(conn: asyncpg.Connection) -> list[int]:
    return [
        row["pid"] for row in await conn.fetch(f"SELECT pid FROM pg_stat_activity WHERE {LISTENER}")
    ]


async def test_the_app_keeps_one_listening_connection(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    await new_user(client)
    assert len(await listener_pids(conn)) == 1
    query = await conn.fetchval(f"SELECT query FROM pg_stat_activity WHERE {LISTENER}")
    assert "LISTEN" in query.upper() or query == "SELECT 1", query


@pytest.mark.parametrize(
    "write",
    [
        "UPDATE device_session SET revoked_at = now() WHERE id = $1",
        "DELETE FROM device_session WHERE id = $1",
        "UPDATE device_session SET expires_at = now() - interval '1 second' WHERE id = $1",
        'UPDATE app_user SET is_active = false WHERE id = (SELECT "user" FROM device_session WHERE id = $1)',
        'DELETE FROM app_user WHERE id = (SELECT "user" FROM device_session WHERE id = $1)',
    ],
    ids=["revoked", "deleted", "expired", "deactivated", "account-deleted"],
)
async def test_a_session_ended_by_another_process_is_refused_within_a_second(
    client: httpx.AsyncClient, conn: asyncpg.Connection, write: str
) -> None:
    device = await new_user(client)
    other = await new_user(client)
    for _ in range(3):  # cached by now
        assert (await client.get(ME, headers=device.headers)).status_code == 200

    await conn.execute(write, uuid.UUID(device.session_id))

    # Until the notification lands: 200, or 404 once the account row itself is gone.
    took = await seconds_until(lambda: token_refused(client, device, 404), limit=1.0)
    assert took < 1.0
    assert (await client.get(ME, headers=device.headers)).status_code == 401
    # Only that session (or account) was forgotten.
    assert (await client.get(ME, headers=other.headers)).status_code == 200


async def test_a_role_changed_by_another_process_binds_admin_routes_at_once(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    # Admin routes read the role as stored (guards.requires_role), not as cached.
    device = await new_user(client)
    users = "/api/v1/users"
    assert (await client.get(users, headers=device.headers)).status_code == 403
    await conn.execute("UPDATE app_user SET role = 'admin' WHERE email = $1", device.email)
    assert (await client.get(users, headers=device.headers)).status_code == 200
    await conn.execute("UPDATE app_user SET role = 'user' WHERE email = $1", device.email)
    assert (await client.get(users, headers=device.headers)).status_code == 403


async def test_own_revocations_apply_at_once_without_waiting_for_the_notification(
    client: httpx.AsyncClient,
) -> None:
    for _ in range(10):
        device = await new_user(client)
        assert (await client.get(ME, headers=device.headers)).status_code == 200
        assert (await client.post("/api/v1/auth/logout", headers=device.headers)).status_code == 204
        assert (await client.get(ME, headers=device.headers)).status_code == 401


@pytest.fixture
async def pooled(database_url: str) -> AsyncIterator[str]:
    """The test database's URL, with the app's connection pool open on it (as in the app)."""
    async with db.connection_pool(load_settings({"APP_ENV": "test", "DATABASE_URL": database_url})):
        yield database_url


async def a_session(conn: asyncpg.Connection) -> tuple[uuid.UUID, uuid.UUID]:
    """A live session of a new active account, written straight to the database."""
    user_id, session_id = uuid.uuid4(), uuid.uuid4()
    await conn.execute(
        "INSERT INTO app_user (id, email, password_hash) VALUES ($1, $2, 'x')",
        user_id,
        f"{user_id.hex}@example.com",
    )
    await conn.execute(
        'INSERT INTO device_session (id, "user", device_name, refresh_salt, expires_at) '
        "VALUES ($1, $2, 'phone', 'salt', now() + interval '1 day')",
        session_id,
        user_id,
    )
    return user_id, session_id


async def revoke_unannounced(conn: asyncpg.Connection, session_id: uuid.UUID) -> None:
    """Revoke with the notifying trigger off: only what the cache does without a NOTIFY shows."""
    async with conn.transaction():
        await conn.execute(
            "ALTER TABLE device_session DISABLE TRIGGER device_session_notify_update"
        )
        await conn.execute("UPDATE device_session SET revoked_at = now() WHERE id = $1", session_id)
        await conn.execute("ALTER TABLE device_session ENABLE TRIGGER device_session_notify_update")


async def test_the_cache_fails_closed_while_its_listener_is_down_and_recovers(
    pooled: str, conn: asyncpg.Connection
) -> None:
    # A long pause before reconnecting, so the test can look while nobody listens.
    sessions = LiveSessions(reconnect_seconds=(3.0,))

    async def listening() -> bool:
        return sessions.listening

    async def not_listening() -> bool:
        return not sessions.listening

    async with sessions.listener(pooled):
        await seconds_until(listening, limit=5.0)
        user_id, session_id = await a_session(conn)
        assert await sessions.role_of(user_id, session_id) == "user"
        # Answered from memory: a revocation nobody announces is not seen...
        await revoke_unannounced(conn, session_id)
        assert await sessions.role_of(user_id, session_id) == "user"

        # ...until the listener is lost: then nothing is answered from memory.
        [pid] = await listener_pids(conn)
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
        await seconds_until(not_listening, limit=1.0)
        assert await sessions.role_of(user_id, session_id) is None
        # And while it is down, a live session is checked in the database every time.
        other_user, other_session = await a_session(conn)
        assert await sessions.role_of(other_user, other_session) == "user"
        await revoke_unannounced(conn, other_session)
        assert await sessions.role_of(other_user, other_session) is None

        # Back: it listens (a new backend) and caches again, and announced revocations arrive.
        await seconds_until(listening, limit=6.0)
        assert await listener_pids(conn) not in ([], [pid])
        third_user, third_session = await a_session(conn)
        assert await sessions.role_of(third_user, third_session) == "user"
        await conn.execute(
            "UPDATE device_session SET revoked_at = now() WHERE id = $1", third_session
        )

        async def gone() -> bool:
            return await sessions.role_of(third_user, third_session) is None

        assert await seconds_until(gone, limit=1.0) < 1.0
    assert not sessions.listening

    async def closed() -> bool:
        return await listener_pids(conn) == []

    await seconds_until(closed, limit=2.0)


async def test_an_expired_session_is_not_answered_from_memory(
    pooled: str, conn: asyncpg.Connection
) -> None:
    sessions = LiveSessions()
    async with sessions.listener(pooled):
        await seconds_until(lambda: asyncio.sleep(0, sessions.listening), limit=5.0)
        user_id, session_id = await a_session(conn)
        await conn.execute(
            "ALTER TABLE device_session DISABLE TRIGGER device_session_notify_update"
        )
        await conn.execute(
            "UPDATE device_session SET expires_at = now() + interval '1 second' WHERE id = $1",
            session_id,
        )
        assert await sessions.role_of(user_id, session_id) == "user"
        await asyncio.sleep(1.1)
        assert await sessions.role_of(user_id, session_id) is None
        # A token naming the session with another user id is never answered from memory.
        assert await sessions.role_of(uuid.uuid4(), session_id) is None
