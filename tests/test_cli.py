"""The operator commands (`python -m todo_api ...`), run as the justfile runs them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from tests.support.accounts import PASSWORD, fresh_jar, login, new_user, unique_email
from tests.support.cli import run_cli

pytestmark = pytest.mark.anyio


# --- create-user ----------------------------------------------------------------------------


async def test_create_user_makes_an_active_admin_who_can_log_in(
    database_url: str, conn: asyncpg.Connection, client: httpx.AsyncClient
) -> None:
    email = unique_email("Operator").replace("example.com", "Example.COM")

    result = run_cli(database_url, "create-user", email, PASSWORD, "admin")

    assert result.returncode == 0, result.stderr
    row = await conn.fetchrow(
        "SELECT id, email, role, is_active FROM app_user WHERE email = $1", email.lower()
    )
    assert row is not None
    assert (row["email"], row["role"], row["is_active"]) == (email.lower(), "admin", True)
    assert f"created admin {email.lower()} ({row['id']})" in result.stdout
    assert PASSWORD not in result.stdout + result.stderr
    event = await conn.fetchval(
        "SELECT type FROM auth_event WHERE user_id = $1 AND type = 'register'", row["id"]
    )
    assert event == "register"

    admin = await login(client, email)
    assert admin.user_id == str(row["id"])
    response = await client.get("/api/v1/users", headers=admin.headers)
    assert response.status_code == 200, response.text
    assert [user["id"] for user in response.json()["data"]] == [str(row["id"])]


async def test_create_user_with_a_taken_email_fails_cleanly(
    database_url: str, conn: asyncpg.Connection, client: httpx.AsyncClient
) -> None:
    existing = await new_user(client)

    result = run_cli(database_url, "create-user", existing.email.upper(), PASSWORD, "admin")

    assert result.returncode != 0
    assert "error:" in result.stderr
    assert "already exists" in result.stderr
    assert "Traceback" not in result.stderr
    rows = await conn.fetch("SELECT role FROM app_user WHERE email = $1", existing.email)
    assert [row["role"] for row in rows] == ["user"]


async def test_create_user_with_an_unknown_role_fails(
    database_url: str, conn: asyncpg.Connection
) -> None:
    email = unique_email()

    result = run_cli(database_url, "create-user", email, PASSWORD, "root")

    assert result.returncode != 0
    assert "role" in result.stderr
    assert "Traceback" not in result.stderr
    assert await conn.fetchval("SELECT count(*) FROM app_user") == 0


@pytest.mark.parametrize(
    ("email", "password"),
    [
        ("short-password@example.com", "short"),
        ("not-an-email", PASSWORD),
    ],
)
async def test_create_user_with_invalid_input_fails_cleanly(
    database_url: str, conn: asyncpg.Connection, email: str, password: str
) -> None:
    result = run_cli(database_url, "create-user", email, password, "user")

    assert result.returncode != 0
    assert result.stderr.startswith("error:")
    assert "Traceback" not in result.stderr
    assert await conn.fetchval("SELECT count(*) FROM app_user") == 0


# --- cleanup --------------------------------------------------------------------------------


async def test_cleanup_deletes_dead_sessions_and_keeps_recent_and_live_ones(
    database_url: str, conn: asyncpg.Connection, client: httpx.AsyncClient
) -> None:
    device = await new_user(client)
    sessions = {"live": device.session_id}
    for name in (
        "revoked_2_days_ago",
        "revoked_1_hour_ago",
        "expired_2_days_ago",
        "idle_10_days",
        "revoked_23_hours_ago",
    ):
        sessions[name] = (await login(client, device.email)).session_id
    now = datetime.now(UTC)

    async def set_column(name: str, column: str, value: datetime) -> None:
        await conn.execute(
            f"UPDATE device_session SET {column} = $1 WHERE id = $2",
            value,
            uuid.UUID(sessions[name]),
        )

    await set_column("revoked_2_days_ago", "revoked_at", now - timedelta(days=2))
    await set_column("revoked_1_hour_ago", "revoked_at", now - timedelta(hours=1))
    await set_column("revoked_23_hours_ago", "revoked_at", now - timedelta(hours=23))
    await set_column("expired_2_days_ago", "expires_at", now - timedelta(days=2))
    await set_column("idle_10_days", "last_used_at", now - timedelta(days=10))

    result = run_cli(database_url, "cleanup")

    assert result.returncode == 0, result.stderr
    assert "cleanup: deleted 3 sessions" in result.stdout, result.stdout
    remaining = {
        str(row["id"])
        for row in await conn.fetch(
            'SELECT id FROM device_session WHERE "user" = $1', uuid.UUID(device.user_id)
        )
    }
    assert remaining == {
        sessions["live"],
        sessions["revoked_1_hour_ago"],
        sessions["revoked_23_hours_ago"],
    }
    # The live session is untouched and still works.
    response = await client.get("/api/v1/users/me", headers=device.headers)
    assert response.status_code == 200, response.text


async def test_cleanup_keeps_recently_revoked_sessions_so_token_reuse_is_still_detected(
    database_url: str, conn: asyncpg.Connection, client: httpx.AsyncClient
) -> None:
    device = await new_user(client)
    stolen = device.refresh_token
    rotated = await device.client.post("/api/v1/auth/refresh")
    assert rotated.status_code == 200, rotated.text
    # Past the reuse leeway: replaying the old token now is theft, and revokes the session.
    await conn.execute(
        "UPDATE device_session SET rotated_at = now() - interval '1 hour' WHERE id = $1",
        uuid.UUID(device.session_id),
    )
    async with fresh_jar(client) as thief:
        replay = await thief.post(
            "/api/v1/auth/refresh", headers={"Cookie": f"refresh_token={stolen}"}
        )
    assert replay.status_code == 401
    revoked_at = await conn.fetchval(
        "SELECT revoked_at FROM device_session WHERE id = $1", uuid.UUID(device.session_id)
    )
    assert revoked_at is not None

    result = run_cli(database_url, "cleanup")

    assert result.returncode == 0, result.stderr
    assert "deleted 0 sessions" in result.stdout
    row = await conn.fetchrow(
        "SELECT revoke_reason FROM device_session WHERE id = $1", uuid.UUID(device.session_id)
    )
    assert row is not None
    assert row["revoke_reason"] == "refresh_reuse"


async def test_cleanup_with_nothing_to_do_deletes_nothing(database_url: str) -> None:
    result = run_cli(database_url, "cleanup")

    assert result.returncode == 0, result.stderr
    assert "cleanup: deleted 0 sessions" in result.stdout


async def test_cleanup_purges_old_audit_events_and_expired_admin_sessions(
    database_url: str, conn: asyncpg.Connection
) -> None:
    await conn.execute(
        "INSERT INTO auth_event (id, type, ip, user_agent, created_at, detail) VALUES "
        "(gen_random_uuid(), 'login_failed', '', '', now() - interval '91 days', '{}'), "
        "(gen_random_uuid(), 'login_failed', '', '', now() - interval '89 days', '{}')"
    )
    await conn.execute(
        "INSERT INTO sessions (token, user_id, expiry_date, max_expiry_date) VALUES "
        "('expired-token', 1, now() - interval '1 hour', now() + interval '1 day'), "
        "('live-token', 1, now() + interval '1 hour', now() + interval '1 day')"
    )
    result = run_cli(database_url, "cleanup")
    assert result.returncode == 0, result.stderr
    assert "1 audit events" in result.stdout
    assert "1 admin sessions" in result.stdout
    assert await conn.fetchval("SELECT count(*) FROM auth_event") == 1
    assert await conn.fetchval("SELECT token FROM sessions") == "live-token"


async def test_cleanup_skips_while_another_process_holds_its_lock(
    database_url: str, conn: asyncpg.Connection
) -> None:
    from todo_api.ops.jobs import CLEANUP_LOCK_ID

    await conn.execute(
        "INSERT INTO auth_event (id, type, ip, user_agent, created_at, detail) VALUES "
        "(gen_random_uuid(), 'login_failed', '', '', now() - interval '400 days', '{}')"
    )
    await conn.execute("SELECT pg_advisory_lock($1)", CLEANUP_LOCK_ID)
    try:
        busy = run_cli(database_url, "cleanup")
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", CLEANUP_LOCK_ID)
    assert busy.returncode == 0, busy.stderr
    assert "another process holds the cleanup lock" in busy.stdout
    assert await conn.fetchval("SELECT count(*) FROM auth_event") == 1
    done = run_cli(database_url, "cleanup")
    assert "1 audit events" in done.stdout
    assert await conn.fetchval("SELECT count(*) FROM auth_event") == 0
