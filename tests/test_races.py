"""Real concurrency (separate connections, real commits): no 500, no deadlock, no false reuse
detection, no duplicate rows."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
import pytest

from tests.support.accounts import (
    PASSWORD,
    login,
    new_user,
    refresh_cookie_of,
    refresh_with,
    register,
)

pytestmark = pytest.mark.anyio


async def test_fifty_concurrent_refreshes_of_one_token_agree_on_one_new_token(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    device = await new_user(client)
    responses = await asyncio.gather(
        *(refresh_with(client, device.refresh_token) for _ in range(50))
    )
    assert {r.status_code for r in responses} == {200}
    assert len({refresh_cookie_of(r) for r in responses}) == 1
    row = await conn.fetchrow(
        "SELECT refresh_counter, revoked_at FROM device_session WHERE id = $1",
        uuid.UUID(device.session_id),
    )
    assert row["refresh_counter"] == 1
    assert row["revoked_at"] is None
    reuse = await conn.fetchval(
        "SELECT count(*) FROM auth_event WHERE type = 'refresh_reuse_detected'"
    )
    assert reuse == 0


async def test_refresh_racing_logout_ends_logged_out_without_errors(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    for _ in range(5):
        device = await new_user(client)
        refresh, logout = await asyncio.gather(
            refresh_with(client, device.refresh_token),
            device.client.post("/api/v1/auth/logout"),
        )
        assert logout.status_code == 204
        assert refresh.status_code in (200, 401)
        revoked = await conn.fetchval(
            "SELECT revoke_reason FROM device_session WHERE id = $1", uuid.UUID(device.session_id)
        )
        assert revoked == "logout"
        # Whatever the refresh got, the device is logged out now.
        after = await refresh_with(
            client,
            refresh_cookie_of(refresh) if refresh.status_code == 200 else device.refresh_token,
        )
        assert after.status_code == 401
    reuse = await conn.fetchval(
        "SELECT count(*) FROM auth_event WHERE type = 'refresh_reuse_detected'"
    )
    assert reuse == 0


async def test_requests_in_flight_during_revocation_are_served_or_refused_never_broken(
    client: httpx.AsyncClient,
) -> None:
    phone = await new_user(client)
    laptop = await login(client, phone.email)

    async def revoke() -> httpx.Response:
        await asyncio.sleep(0.005)
        return await phone.client.delete(f"/api/v1/auth/sessions/{laptop.session_id}")

    results = await asyncio.gather(
        *(client.get("/api/v1/users/me", headers=laptop.headers) for _ in range(30)), revoke()
    )
    *reads, revocation = results
    assert revocation.status_code == 204
    assert {r.status_code for r in reads} <= {200, 401}
    # Once the revocation has answered, nothing gets through.
    after = await asyncio.gather(
        *(client.get("/api/v1/users/me", headers=laptop.headers) for _ in range(10))
    )
    assert {r.status_code for r in after} == {401}


async def test_concurrent_registration_of_one_email_creates_exactly_one_account(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    email = f"race-{uuid.uuid4().hex[:8]}@example.com"
    responses = await asyncio.gather(
        *(
            client.post(
                "/api/v1/auth/register",
                json={"email": email if i % 2 else email.upper(), "password": PASSWORD},
            )
            for i in range(12)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 11
    assert await conn.fetchval("SELECT count(*) FROM app_user WHERE email = $1", email) == 1


async def test_concurrent_logins_and_refreshes_of_many_devices_do_not_deadlock(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    user = await register(client)
    devices = await asyncio.gather(
        *(login(client, user["email"], device_id=f"device-{i}") for i in range(8))
    )
    rounds = await asyncio.wait_for(
        asyncio.gather(
            *(refresh_with(client, d.refresh_token) for d in devices),
            *(login(client, user["email"], device_id=f"device-{i}") for i in range(8, 12)),
            devices[0].client.post("/api/v1/auth/logout-all"),
            return_exceptions=True,
        ),
        timeout=30,
    )
    for outcome in rounds:
        assert not isinstance(outcome, BaseException), outcome
        if isinstance(outcome, httpx.Response):
            assert outcome.status_code < 500, outcome.text
    live_per_device = await conn.fetch(
        "SELECT device_id, count(*) AS n FROM device_session "
        "WHERE revoked_at IS NULL GROUP BY device_id"
    )
    assert all(row["n"] == 1 for row in live_per_device)


async def test_a_demoted_admin_is_refused_on_admin_routes_at_once(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    admin = await new_user(client)
    await conn.execute("UPDATE app_user SET role = 'admin' WHERE id = $1", uuid.UUID(admin.user_id))
    assert (await admin.client.get("/api/v1/users")).status_code == 200
    await conn.execute("UPDATE app_user SET role = 'user' WHERE id = $1", uuid.UUID(admin.user_id))
    refused = await admin.client.get("/api/v1/users")
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
