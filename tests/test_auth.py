"""Registration, login from many devices, device sessions, refresh rotation with reuse detection."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta

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
    unique_email,
)
from tests.support.problems import assert_problem

pytestmark = pytest.mark.anyio

ClientFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


async def session_row(conn: asyncpg.Connection, session_id: str) -> asyncpg.Record:
    row = await conn.fetchrow("SELECT * FROM device_session WHERE id = $1", uuid.UUID(session_id))
    assert row is not None
    return row


async def event_types(conn: asyncpg.Connection, user_id: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT type FROM auth_event WHERE user_id = $1 ORDER BY created_at, id",
        uuid.UUID(user_id),
    )
    return [row["type"] for row in rows]


async def test_register_creates_an_account_without_exposing_the_hash(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    email = unique_email()
    response = await client.post(
        "/api/v1/auth/register",
        json={
            "email": email.upper(),
            "password": PASSWORD,
            "username": "Ada_L",
            "display_name": " Ada ",
        },
    )
    assert response.status_code == 201
    body = response.json()
    assert body["email"] == email
    assert body["username"] == "ada_l"
    assert body["display_name"] == "Ada"
    assert body["role"] == "user"
    assert not any("hash" in key or "password" in key for key in body)
    stored = await conn.fetchrow("SELECT * FROM app_user WHERE id = $1", uuid.UUID(body["id"]))
    assert stored["password_hash"].startswith("$argon2id$")
    assert PASSWORD not in stored["password_hash"]
    assert await event_types(conn, body["id"]) == ["register"]


async def test_login_works_with_email_or_username_and_sets_both_cookies(
    client: httpx.AsyncClient,
) -> None:
    user = await register(client, username="grace")
    for name in (user["email"].upper(), "GRACE"):
        response = await client.post(
            "/api/v1/auth/login", json={"login": name, "password": PASSWORD}
        )
        assert response.status_code == 200
        body = response.json()
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == 15 * 60
        assert body["user"]["id"] == user["id"]
        assert "refresh_token" not in body
        assert response.headers["cache-control"] == "no-store"
        cookies = response.headers.get_list("set-cookie")
        access = next(c for c in cookies if c.startswith("access_token="))
        refresh = next(c for c in cookies if c.startswith("refresh_token="))
        assert "HttpOnly" in access
        assert "SameSite=strict" in access
        assert "Path=/api/v1/auth" in refresh
        assert "HttpOnly" in refresh
        assert "SameSite=strict" in refresh
        assert "Max-Age=2591" in refresh  # the session's absolute lifetime, 30 days


async def test_access_token_works_as_bearer_and_as_cookie(client: httpx.AsyncClient) -> None:
    device = await new_user(client)
    by_header = await client.get("/api/v1/users/me", headers=device.headers)
    assert by_header.status_code == 200
    by_cookie = await device.client.get("/api/v1/users/me")
    assert by_cookie.status_code == 200
    assert by_cookie.json()["id"] == device.user_id


async def test_unknown_user_and_wrong_password_get_the_same_401(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    user = await register(client)
    unknown = await client.post(
        "/api/v1/auth/login", json={"login": unique_email(), "password": PASSWORD}
    )
    wrong = await client.post(
        "/api/v1/auth/login", json={"login": user["email"], "password": "not the password"}
    )
    for response in (unknown, wrong):
        assert_problem(response, 401)
        assert "set-cookie" not in response.headers
    assert unknown.json() == wrong.json()
    assert await event_types(conn, user["id"]) == ["register", "login_failed"]
    assert await conn.fetchval("SELECT count(*) FROM device_session") == 0


async def test_inactive_account_cannot_log_in(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    user = await register(client)
    await conn.execute("UPDATE app_user SET is_active = false WHERE id = $1", uuid.UUID(user["id"]))
    response = await client.post(
        "/api/v1/auth/login", json={"login": user["email"], "password": PASSWORD}
    )
    assert_problem(response, 401)


async def test_login_rehashes_a_password_stored_with_old_parameters(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    from argon2 import PasswordHasher

    user = await register(client)
    weak = PasswordHasher(time_cost=1, memory_cost=512, parallelism=1).hash(PASSWORD)
    await conn.execute(
        "UPDATE app_user SET password_hash = $1 WHERE id = $2", weak, uuid.UUID(user["id"])
    )
    await login(client, user["email"])
    stored = await conn.fetchval(
        "SELECT password_hash FROM app_user WHERE id = $1", uuid.UUID(user["id"])
    )
    assert stored != weak
    assert "m=1024" in stored


async def test_each_login_is_a_device_session_listed_with_current_marked(
    client: httpx.AsyncClient,
) -> None:
    phone = await new_user(client)
    laptop = await login(client, phone.email, device_name="Work laptop", platform="macos")
    response = await phone.client.get("/api/v1/auth/sessions")
    assert response.status_code == 200
    sessions = {s["id"]: s for s in response.json()["data"]}
    assert set(sessions) == {phone.session_id, laptop.session_id}
    assert sessions[phone.session_id]["current"] is True
    assert sessions[laptop.session_id]["current"] is False
    assert sessions[laptop.session_id]["device_name"] == "Work laptop"
    assert sessions[laptop.session_id]["platform"] == "macos"
    assert sessions[phone.session_id]["device_name"] == "httpx"  # derived from User-Agent
    assert response.json()["meta"]["count"] == 2


async def test_device_name_is_derived_from_the_user_agent(client: httpx.AsyncClient) -> None:
    user = await register(client)
    response = await client.post(
        "/api/v1/auth/login",
        json={"login": user["email"], "password": PASSWORD},
        headers={
            "User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) "
            "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
        },
    )
    sessions = await client.get(
        "/api/v1/auth/sessions",
        headers={"Authorization": f"Bearer {response.json()['access_token']}"},
    )
    assert sessions.json()["data"][0]["device_name"] == "Safari on iPhone"


async def test_logging_in_again_with_the_same_device_id_replaces_its_session(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    first = await login(client, (await register(client))["email"], device_id="install-1")
    again = await login(client, first.email, device_id="install-1")
    other = await login(client, first.email, device_id="install-2")
    live = await again.client.get("/api/v1/auth/sessions")
    assert {s["id"] for s in live.json()["data"]} == {again.session_id, other.session_id}
    old = await session_row(conn, first.session_id)
    assert old["revoked_at"] is not None
    assert old["revoke_reason"] == "replaced"
    assert (await client.get("/api/v1/users/me", headers=first.headers)).status_code == 401


async def test_concurrent_logins_from_one_device_id_leave_one_live_session(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    user = await register(client)
    responses = await asyncio.gather(
        *(
            client.post(
                "/api/v1/auth/login",
                json={"login": user["email"], "password": PASSWORD, "device_id": "same"},
            )
            for _ in range(5)
        )
    )
    assert [r.status_code for r in responses] == [200] * 5
    live = await conn.fetchval(
        "SELECT count(*) FROM device_session WHERE device_id = 'same' AND revoked_at IS NULL"
    )
    assert live == 1


async def test_rename_a_device(client: httpx.AsyncClient, conn: asyncpg.Connection) -> None:
    phone = await new_user(client)
    laptop = await login(client, phone.email)
    response = await phone.client.patch(
        f"/api/v1/auth/sessions/{laptop.session_id}", json={"device_name": "Old laptop"}
    )
    assert response.status_code == 200
    assert response.json()["device_name"] == "Old laptop"
    assert response.json()["current"] is False
    assert (await session_row(conn, laptop.session_id))["device_name"] == "Old laptop"


async def test_someone_elses_session_is_404_for_rename_and_revoke(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    alice = await new_user(client)
    mallory = await new_user(client)
    path = f"/api/v1/auth/sessions/{alice.session_id}"
    assert_problem(await mallory.client.patch(path, json={"device_name": "mine"}), 404)
    assert_problem(await mallory.client.delete(path), 404)
    row = await session_row(conn, alice.session_id)
    assert row["revoked_at"] is None
    assert row["device_name"] == "httpx"
    assert_problem(await mallory.client.delete(f"/api/v1/auth/sessions/{uuid.uuid4()}"), 404)
    assert_problem(await mallory.client.delete("/api/v1/auth/sessions/not-a-uuid"), 404)


async def test_revoking_one_device_logs_out_only_that_device(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    phone = await new_user(client)
    laptop = await login(client, phone.email)
    response = await phone.client.delete(f"/api/v1/auth/sessions/{laptop.session_id}")
    assert response.status_code == 204
    assert (await laptop.client.get("/api/v1/users/me")).status_code == 401
    assert (await laptop.client.post("/api/v1/auth/refresh")).status_code == 401
    assert (await phone.client.get("/api/v1/users/me")).status_code == 200
    assert "session_revoked" in await event_types(conn, phone.user_id)


async def test_logout_ends_this_device_and_clears_both_cookies(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    phone = await new_user(client)
    laptop = await login(client, phone.email)
    response = await phone.client.post("/api/v1/auth/logout")
    assert response.status_code == 204
    cleared = response.headers.get_list("set-cookie")
    assert any(c.startswith("access_token=") and "Max-Age=0" in c for c in cleared)
    assert any(
        c.startswith("refresh_token=") and "Max-Age=0" in c and "Path=/api/v1/auth" in c
        for c in cleared
    )
    assert (await client.get("/api/v1/users/me", headers=phone.headers)).status_code == 401
    assert (await session_row(conn, phone.session_id))["revoke_reason"] == "logout"
    assert (await laptop.client.get("/api/v1/users/me")).status_code == 200


async def test_logout_all_ends_every_device(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    phone = await new_user(client)
    laptop = await login(client, phone.email)
    other_user = await new_user(client)
    assert (await phone.client.post("/api/v1/auth/logout-all")).status_code == 204
    for device in (phone, laptop):
        assert (await client.get("/api/v1/users/me", headers=device.headers)).status_code == 401
    assert (await other_user.client.get("/api/v1/users/me")).status_code == 200
    live = await conn.fetchval(
        'SELECT count(*) FROM device_session WHERE "user" = $1 AND revoked_at IS NULL',
        uuid.UUID(phone.user_id),
    )
    assert live == 0


async def test_refresh_rotates_the_cookie_and_issues_a_new_access_token(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    device = await new_user(client)
    response = await device.client.post("/api/v1/auth/refresh")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["session_id"] == device.session_id
    assert "refresh_token" not in body
    new_cookie = refresh_cookie_of(response)
    assert new_cookie != device.refresh_token
    assert (await session_row(conn, device.session_id))["refresh_counter"] == 1
    me = await client.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.status_code == 200
    # The stored row holds no usable token: only a counter and a salt.
    row = await session_row(conn, device.session_id)
    assert new_cookie not in str(dict(row))


async def test_twenty_concurrent_refreshes_with_one_token_all_get_the_same_new_token(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    device = await new_user(client)
    responses = await asyncio.gather(
        *(refresh_with(client, device.refresh_token) for _ in range(20))
    )
    assert [r.status_code for r in responses] == [200] * 20
    new_tokens = {refresh_cookie_of(r) for r in responses}
    assert len(new_tokens) == 1
    row = await session_row(conn, device.session_id)
    assert row["revoked_at"] is None
    assert row["refresh_counter"] == 1
    follow_up = await refresh_with(client, new_tokens.pop())
    assert follow_up.status_code == 200
    assert "refresh_reuse_detected" not in await event_types(conn, device.user_id)


async def test_the_previous_token_within_the_leeway_gets_the_current_token_back(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    device = await new_user(client)
    first = await refresh_with(client, device.refresh_token)
    late = await refresh_with(client, device.refresh_token)
    assert late.status_code == 200
    assert refresh_cookie_of(late) == refresh_cookie_of(first)
    assert (await session_row(conn, device.session_id))["refresh_counter"] == 1


async def test_a_replayed_refresh_token_revokes_only_that_device(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    phone = await new_user(client)
    laptop = await login(client, phone.email)
    stolen = phone.refresh_token
    first = await refresh_with(client, stolen)
    second = await refresh_with(client, refresh_cookie_of(first))
    assert second.status_code == 200
    # `stolen` is now two rotations old: that is reuse, whatever the leeway.
    replay = await refresh_with(client, stolen)
    assert_problem(replay, 401)
    row = await session_row(conn, phone.session_id)
    assert row["revoked_at"] is not None
    assert row["revoke_reason"] == "refresh_reuse"
    assert "refresh_reuse_detected" in await event_types(conn, phone.user_id)
    # The legitimate holder of the newest token is logged out too; other devices are not.
    newest = refresh_cookie_of(second)
    assert (await refresh_with(client, newest)).status_code == 401
    assert (await laptop.client.get("/api/v1/users/me")).status_code == 200
    assert (await laptop.client.post("/api/v1/auth/refresh")).status_code == 200


async def test_the_previous_token_after_the_leeway_is_reuse(
    client_with: ClientFactory, conn: asyncpg.Connection
) -> None:
    # A zero leeway makes "the previous token" reuse at once, without waiting in the test.
    async with client_with(REFRESH_REUSE_LEEWAY_SECONDS="0") as client:
        device = await new_user(client)
        await refresh_with(client, device.refresh_token)
        await asyncio.sleep(0.01)
        late = await refresh_with(client, device.refresh_token)
    assert_problem(late, 401)
    assert (await session_row(conn, device.session_id))["revoke_reason"] == "refresh_reuse"


async def test_an_idle_session_cannot_refresh(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    device = await new_user(client)
    await conn.execute(
        "UPDATE device_session SET last_used_at = now() - interval '8 days' WHERE id = $1",
        uuid.UUID(device.session_id),
    )
    assert_problem(await device.client.post("/api/v1/auth/refresh"), 401)
    listed = await login(client, device.email)
    sessions = (await listed.client.get("/api/v1/auth/sessions")).json()["data"]
    assert device.session_id not in {s["id"] for s in sessions}


async def test_a_session_past_its_absolute_lifetime_is_dead(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    device = await new_user(client)
    await conn.execute(
        "UPDATE device_session SET expires_at = now() - interval '1 second' WHERE id = $1",
        uuid.UUID(device.session_id),
    )
    assert_problem(await device.client.post("/api/v1/auth/refresh"), 401)
    assert_problem(await device.client.get("/api/v1/users/me"), 401)


async def test_refresh_cookie_max_age_is_the_remaining_absolute_lifetime(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    device = await new_user(client)
    await conn.execute(
        "UPDATE device_session SET expires_at = now() + interval '1 hour' WHERE id = $1",
        uuid.UUID(device.session_id),
    )
    response = await device.client.post("/api/v1/auth/refresh")
    refresh = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith("refresh_token=")
    )
    max_age = int(refresh.split("Max-Age=")[1].split(";")[0])
    assert 3590 <= max_age <= 3600


async def test_events_show_my_auth_history_newest_first(client: httpx.AsyncClient) -> None:
    device = await new_user(client)
    await device.client.post("/api/v1/auth/refresh")
    response = await device.client.get("/api/v1/auth/events")
    assert response.status_code == 200
    types = [e["type"] for e in response.json()["data"]]
    assert types == ["refreshed", "login_succeeded", "register"]


async def test_the_oauth2_password_form_issues_a_token(client: httpx.AsyncClient) -> None:
    user = await register(client)
    response = await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "password", "username": user["email"], "password": PASSWORD},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    me = await client.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.status_code == 200
    wrong = await client.post(
        "/api/v1/auth/token", data={"username": user["email"], "password": "nope nope"}
    )
    assert_problem(wrong, 401)


async def test_openapi_describes_the_oauth2_password_flow(client: httpx.AsyncClient) -> None:
    document = (await client.get("/docs/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    flow = next(iter(schemes.values()))
    assert flow["type"] == "oauth2"
    assert flow["flows"]["password"]["tokenUrl"] == "/api/v1/auth/token"


async def test_audit_ip_ignores_x_forwarded_for_from_an_untrusted_peer(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    user = await register(client)
    await client.post(
        "/api/v1/auth/login",
        json={"login": user["email"], "password": PASSWORD},
        headers={"X-Forwarded-For": "203.0.113.9"},
    )
    ips = await conn.fetch('SELECT ip FROM device_session WHERE "user" = $1', uuid.UUID(user["id"]))
    assert [row["ip"] for row in ips] == ["127.0.0.1"]


async def test_audit_ip_comes_from_x_forwarded_for_behind_a_trusted_proxy(
    client_with: ClientFactory, conn: asyncpg.Connection
) -> None:
    async with client_with(TRUSTED_PROXIES="127.0.0.1") as client:
        user = await register(client)
        await client.post(
            "/api/v1/auth/login",
            json={"login": user["email"], "password": PASSWORD},
            headers={"X-Forwarded-For": "198.51.100.7, 203.0.113.9"},
        )
    ip = await conn.fetchval(
        'SELECT ip FROM device_session WHERE "user" = $1', uuid.UUID(user["id"])
    )
    assert ip == "203.0.113.9"


async def test_session_expiry_is_the_configured_absolute_lifetime(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    device = await new_user(client)
    row = await session_row(conn, device.session_id)
    assert row["expires_at"] - row["created_at"] == timedelta(days=30)
