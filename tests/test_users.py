"""/api/v1/users: my profile, password and account; user administration; my auth events."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support.accounts import (
    PASSWORD,
    Device,
    fresh_jar,
    login,
    new_user,
    register,
    unique_email,
    user_with_role,
)
from tests.support.problems import assert_problem

pytestmark = pytest.mark.anyio

ME = "/api/v1/users/me"
USERS = "/api/v1/users"
EVENTS = "/api/v1/auth/events"
NEW_PASSWORD = "an entirely different passphrase"
SECRET_WORDS = ("hash", "password", "salt")


def assert_no_secrets(body: Any) -> None:
    """No key anywhere in a JSON document names a hash, a password or a salt."""
    if isinstance(body, dict):
        for key, value in body.items():
            assert not any(word in key.lower() for word in SECRET_WORDS), key
            assert_no_secrets(value)
    elif isinstance(body, list):
        for item in body:
            assert_no_secrets(item)


def ok_json(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    assert_no_secrets(body)
    return body


async def refresh(device: Device) -> httpx.Response:
    return await device.client.post("/api/v1/auth/refresh")


async def login_response(client: httpx.AsyncClient, name: str, password: str) -> httpx.Response:
    async with fresh_jar(client) as fresh:
        return await fresh.post("/api/v1/auth/login", json={"login": name, "password": password})


# --- /users/me ------------------------------------------------------------------------------


async def test_get_me_returns_my_profile_without_secrets(client: httpx.AsyncClient) -> None:
    email = unique_email()
    registered = await register(client, email=email, username="Me_Myself", display_name="Me")
    assert_no_secrets(registered)
    device = await login(client, email)

    body = ok_json(await client.get(ME, headers=device.headers))

    assert body["id"] == registered["id"]
    assert body["email"] == email
    assert body["username"] == "me_myself"
    assert body["display_name"] == "Me"
    assert body["role"] == "user"
    assert body["is_active"] is True
    assert body["last_login_at"] is not None


async def test_get_me_without_a_token_is_a_401_problem(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get(ME), 401)


async def test_patch_me_changes_the_display_name(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    device = await new_user(client)

    body = ok_json(await client.patch(ME, json={"display_name": "  Ada  "}, headers=device.headers))

    assert body["display_name"] == "Ada"
    stored = await conn.fetchval(
        "SELECT display_name FROM app_user WHERE id = $1", uuid.UUID(device.user_id)
    )
    assert stored == "Ada"


async def test_patch_me_stores_the_username_lower_case_and_null_clears_it(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    device = await new_user(client)
    user_id = uuid.UUID(device.user_id)

    body = ok_json(await client.patch(ME, json={"username": "Grace.H"}, headers=device.headers))
    assert body["username"] == "grace.h"
    assert await conn.fetchval("SELECT username FROM app_user WHERE id = $1", user_id) == "grace.h"
    # The new username is a login name, whatever its case.
    await login(client, "GRACE.H")

    body = ok_json(await client.patch(ME, json={"username": None}, headers=device.headers))
    assert body["username"] is None
    assert await conn.fetchval("SELECT username FROM app_user WHERE id = $1", user_id) is None


async def test_patch_me_with_a_username_taken_by_another_user_is_a_409(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    await register(client, username="taken_name")
    device = await new_user(client, username="mine")

    response = await client.patch(ME, json={"username": "Taken_Name"}, headers=device.headers)

    assert_problem(response, 409)
    stored = await conn.fetchval(
        "SELECT username FROM app_user WHERE id = $1", uuid.UUID(device.user_id)
    )
    assert stored == "mine"


async def test_patch_me_email_needs_the_current_password(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    device = await new_user(client)
    user_id = uuid.UUID(device.user_id)
    new_email = unique_email("moved")

    assert_problem(await client.patch(ME, json={"email": new_email}, headers=device.headers), 401)
    wrong = {"email": new_email, "current_password": "not the password"}
    assert_problem(await client.patch(ME, json=wrong, headers=device.headers), 401)
    assert await conn.fetchval("SELECT email FROM app_user WHERE id = $1", user_id) == device.email


async def test_patch_me_email_with_the_password_is_stored_lower_case_and_logs_in(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    device = await new_user(client)
    user_id = uuid.UUID(device.user_id)
    new_email = unique_email("moved")

    change = {"email": new_email.upper(), "current_password": PASSWORD}
    body = ok_json(await client.patch(ME, json=change, headers=device.headers))

    assert body["email"] == new_email
    assert await conn.fetchval("SELECT email FROM app_user WHERE id = $1", user_id) == new_email
    moved = await login(client, new_email)
    assert moved.user_id == device.user_id
    assert_problem(await login_response(client, device.email, PASSWORD), 401)


async def test_patch_me_email_taken_by_another_user_is_a_409(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    other = await register(client)
    device = await new_user(client)

    change = {"email": other["email"].upper(), "current_password": PASSWORD}
    assert_problem(await client.patch(ME, json=change, headers=device.headers), 409)
    stored = await conn.fetchval(
        "SELECT email FROM app_user WHERE id = $1", uuid.UUID(device.user_id)
    )
    assert stored == device.email


async def test_patch_me_with_an_empty_body_changes_nothing(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    device = await new_user(client, username="steady", display_name="Steady")
    query = "SELECT email, username, display_name, updated_at FROM app_user WHERE id = $1"
    before = await conn.fetchrow(query, uuid.UUID(device.user_id))

    body = ok_json(await client.patch(ME, json={}, headers=device.headers))

    assert body == ok_json(await client.get(ME, headers=device.headers))
    assert (body["email"], body["username"], body["display_name"]) == (
        device.email,
        "steady",
        "Steady",
    )
    assert await conn.fetchrow(query, uuid.UUID(device.user_id)) == before


async def test_patch_me_rejects_unknown_fields(client: httpx.AsyncClient) -> None:
    device = await new_user(client)

    response = await client.patch(ME, json={"role": "superadmin"}, headers=device.headers)

    assert_problem(response, 400)
    assert ok_json(await client.get(ME, headers=device.headers))["role"] == "user"


# --- /users/me/password ---------------------------------------------------------------------


async def test_change_password_with_a_wrong_current_password_is_a_401_and_changes_nothing(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    device = await new_user(client)
    other = await login(client, device.email)
    user_id = uuid.UUID(device.user_id)
    hash_before = await conn.fetchval("SELECT password_hash FROM app_user WHERE id = $1", user_id)

    response = await client.put(
        f"{ME}/password",
        json={"current_password": "wrong password!", "new_password": NEW_PASSWORD},
        headers=device.headers,
    )

    assert_problem(response, 401)
    after = await conn.fetchval("SELECT password_hash FROM app_user WHERE id = $1", user_id)
    assert after == hash_before
    await login(client, device.email, PASSWORD)
    assert (await client.get(ME, headers=other.headers)).status_code == 200
    revoked = await conn.fetchval(
        'SELECT count(*) FROM device_session WHERE "user" = $1 AND revoked_at IS NOT NULL',
        user_id,
    )
    assert revoked == 0


async def test_change_password_revokes_other_devices_and_keeps_this_one(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    device = await new_user(client)
    laptop = await login(client, device.email)
    phone = await login(client, device.email)

    response = await client.put(
        f"{ME}/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=device.headers,
    )

    assert response.status_code == 204, response.text
    assert response.content == b""
    # Old password out, new one in.
    assert_problem(await login_response(client, device.email, PASSWORD), 401)
    await login(client, device.email, NEW_PASSWORD)
    # Every other device is logged out at once: access token and refresh cookie.
    for other in (laptop, phone):
        assert_problem(await client.get(ME, headers=other.headers), 401)
        assert_problem(await refresh(other), 401)
    # This device keeps working, and can still refresh.
    assert (await client.get(ME, headers=device.headers)).status_code == 200
    assert (await refresh(device)).status_code == 200

    rows = await conn.fetch(
        'SELECT id, revoked_at, revoke_reason FROM device_session WHERE "user" = $1',
        uuid.UUID(device.user_id),
    )
    by_id = {str(row["id"]): row for row in rows}
    assert by_id[device.session_id]["revoked_at"] is None
    for other in (laptop, phone):
        assert by_id[other.session_id]["revoked_at"] is not None
        assert by_id[other.session_id]["revoke_reason"] == "password_changed"
    events = await conn.fetch(
        "SELECT session_id FROM auth_event WHERE user_id = $1 AND type = 'password_changed'",
        uuid.UUID(device.user_id),
    )
    assert [str(event["session_id"]) for event in events] == [device.session_id]


async def test_change_password_to_a_short_one_is_a_400(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    device = await new_user(client)
    user_id = uuid.UUID(device.user_id)
    hash_before = await conn.fetchval("SELECT password_hash FROM app_user WHERE id = $1", user_id)

    response = await client.put(
        f"{ME}/password",
        json={"current_password": PASSWORD, "new_password": "short"},
        headers=device.headers,
    )

    assert_problem(response, 400)
    after = await conn.fetchval("SELECT password_hash FROM app_user WHERE id = $1", user_id)
    assert after == hash_before


# --- DELETE /users/me -----------------------------------------------------------------------


async def test_delete_me_with_a_wrong_password_is_a_401_and_deletes_nothing(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    device = await new_user(client)
    user_id = uuid.UUID(device.user_id)

    response = await client.request(
        "DELETE", ME, json={"password": "not my password"}, headers=device.headers
    )

    assert_problem(response, 401)
    assert await conn.fetchval("SELECT count(*) FROM app_user WHERE id = $1", user_id) == 1
    assert (
        await conn.fetchval('SELECT count(*) FROM device_session WHERE "user" = $1', user_id) == 1
    )
    assert (await client.get(ME, headers=device.headers)).status_code == 200


async def test_delete_me_removes_the_account_and_its_sessions(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    device = await new_user(client)
    other = await login(client, device.email)
    bystander = await new_user(client)
    user_id = uuid.UUID(device.user_id)

    response = await client.request(
        "DELETE", ME, json={"password": PASSWORD}, headers=device.headers
    )

    assert response.status_code == 204, response.text
    assert await conn.fetchval("SELECT count(*) FROM app_user WHERE id = $1", user_id) == 0
    assert (
        await conn.fetchval('SELECT count(*) FROM device_session WHERE "user" = $1', user_id) == 0
    )
    for gone in (device, other):
        assert_problem(await client.get(ME, headers=gone.headers), 401)
        assert_problem(await refresh(gone), 401)
    assert_problem(await login_response(client, device.email, PASSWORD), 401)
    # Other accounts are untouched.
    assert (await client.get(ME, headers=bystander.headers)).status_code == 200


# --- admin API ------------------------------------------------------------------------------


async def test_a_plain_user_cannot_use_the_admin_api(client: httpx.AsyncClient) -> None:
    device = await new_user(client)
    other = await register(client)

    assert_problem(await client.get(USERS, headers=device.headers), 403)
    assert_problem(await client.get(f"{USERS}/{other['id']}", headers=device.headers), 403)
    assert_problem(await client.get(f"{USERS}/{device.user_id}", headers=device.headers), 403)
    response = await client.patch(
        f"{USERS}/{other['id']}", json={"is_active": False}, headers=device.headers
    )
    assert_problem(response, 403)
    assert ok_json(await client.get(ME, headers=device.headers))["role"] == "user"


async def test_the_admin_api_needs_a_token(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get(USERS), 401)


async def test_admin_lists_users_newest_first(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    admin = await user_with_role(client, conn, "admin")
    created = [await register(client) for _ in range(3)]

    body = ok_json(await client.get(USERS, headers=admin.headers))

    ids = [user["id"] for user in body["data"]]
    assert ids == [user["id"] for user in reversed(created)] + [admin.user_id]
    assert body["meta"] == {"count": 4, "next_cursor": None}
    expected = await conn.fetch("SELECT id FROM app_user ORDER BY created_at DESC, id DESC")
    assert ids == [str(row["id"]) for row in expected]


async def test_admin_pages_through_every_user_without_repeats_or_gaps(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    admin = await user_with_role(client, conn, "admin")
    for _ in range(6):
        await register(client)
    expected = [
        str(row["id"])
        for row in await conn.fetch("SELECT id FROM app_user ORDER BY created_at DESC, id DESC")
    ]
    assert len(expected) == 7

    seen: list[str] = []
    counts: list[int] = []
    cursor: str | None = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        body = ok_json(await client.get(USERS, params=params, headers=admin.headers))
        seen += [user["id"] for user in body["data"]]
        counts.append(body["meta"]["count"])
        assert body["meta"]["count"] == len(body["data"])
        cursor = body["meta"]["next_cursor"]
        if cursor is None:
            break

    assert seen == expected
    assert counts == [3, 3, 1]


async def test_admin_search_matches_email_and_username_case_insensitively(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    admin = await user_with_role(client, conn, "admin")
    by_email = await register(client, email=f"Zebra-{uuid.uuid4().hex[:6]}@Example.com")
    by_username = await register(client, username="zebra_fan")
    await register(client, username="lion")

    body = ok_json(await client.get(USERS, params={"q": "ZEBRA"}, headers=admin.headers))

    assert {user["id"] for user in body["data"]} == {by_email["id"], by_username["id"]}
    assert body["meta"]["count"] == 2


async def test_admin_search_treats_percent_and_underscore_literally(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    admin = await user_with_role(client, conn, "admin")
    tag = uuid.uuid4().hex[:6]
    underscored = await register(client, email=f"a_b{tag}@example.com")
    await register(client, email=f"axb{tag}@example.com")
    percent = await register(client, email=f"100%{tag}@example.com")
    await register(client, email=f"100x{tag}@example.com")

    body = ok_json(await client.get(USERS, params={"q": f"a_b{tag}"}, headers=admin.headers))
    assert [user["id"] for user in body["data"]] == [underscored["id"]]

    body = ok_json(await client.get(USERS, params={"q": "%"}, headers=admin.headers))
    assert [user["id"] for user in body["data"]] == [percent["id"]]

    body = ok_json(await client.get(USERS, params={"q": "_"}, headers=admin.headers))
    assert [user["id"] for user in body["data"]] == [underscored["id"]]


async def test_admin_list_rejects_a_tampered_cursor(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    admin = await user_with_role(client, conn, "admin")
    await register(client)
    body = ok_json(await client.get(USERS, params={"limit": 1}, headers=admin.headers))
    cursor = body["meta"]["next_cursor"]
    assert cursor

    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[-5] ^= 0x01  # one bit of the position, the MAC left as it was
    tampered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    for bad in (tampered, "not-a-cursor", cursor[:-4]):
        response = await client.get(USERS, params={"cursor": bad}, headers=admin.headers)
        assert_problem(response, 400)
    # A cursor is bound to its search: reused with another `q`, it is refused.
    response = await client.get(USERS, params={"cursor": cursor, "q": "x"}, headers=admin.headers)
    assert_problem(response, 400)


@pytest.mark.parametrize("limit", ["0", "101", "-1", "many"])
async def test_admin_list_rejects_a_limit_out_of_range(
    client: httpx.AsyncClient, conn: asyncpg.Connection, limit: str
) -> None:
    admin = await user_with_role(client, conn, "admin")

    response = await client.get(USERS, params={"limit": limit}, headers=admin.headers)

    assert_problem(response, 400)


@pytest.mark.parametrize("q", ["x" * 101, "nul\x00byte"])
async def test_admin_search_rejects_text_outside_its_constraints(
    client: httpx.AsyncClient, conn: asyncpg.Connection, q: str
) -> None:
    admin = await user_with_role(client, conn, "admin")

    response = await client.get(USERS, params={"q": q}, headers=admin.headers)

    assert_problem(response, 400)


async def test_admin_gets_a_user_by_id_and_an_unknown_id_is_a_404(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    admin = await user_with_role(client, conn, "admin")
    user = await register(client, username="someone")

    body = ok_json(await client.get(f"{USERS}/{user['id']}", headers=admin.headers))
    assert body == user

    assert_problem(await client.get(f"{USERS}/{uuid.uuid4()}", headers=admin.headers), 404)
    response = await client.patch(
        f"{USERS}/{uuid.uuid4()}", json={"is_active": False}, headers=admin.headers
    )
    assert_problem(response, 404)


async def test_admin_deactivation_logs_the_user_out_at_once_and_reactivation_lets_them_back(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    admin = await user_with_role(client, conn, "admin")
    target = await new_user(client)
    target_id = uuid.UUID(target.user_id)

    response = await client.patch(
        f"{USERS}/{target.user_id}", json={"is_active": False}, headers=admin.headers
    )

    body = ok_json(response)
    assert body["is_active"] is False
    assert await conn.fetchval("SELECT is_active FROM app_user WHERE id = $1", target_id) is False
    assert_problem(await client.get(ME, headers=target.headers), 401)
    assert_problem(await refresh(target), 401)
    assert_problem(await login_response(client, target.email, PASSWORD), 401)
    live = await conn.fetchval(
        'SELECT count(*) FROM device_session WHERE "user" = $1 AND revoked_at IS NULL', target_id
    )
    assert live == 0
    # The admin is not affected.
    assert (await client.get(ME, headers=admin.headers)).status_code == 200

    response = await client.patch(
        f"{USERS}/{target.user_id}", json={"is_active": True}, headers=admin.headers
    )

    assert ok_json(response)["is_active"] is True
    again = await login(client, target.email)
    assert ok_json(await client.get(ME, headers=again.headers))["is_active"] is True


async def test_an_admin_cannot_change_roles(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    admin = await user_with_role(client, conn, "admin")
    target = await register(client)

    response = await client.patch(
        f"{USERS}/{target['id']}", json={"role": "admin"}, headers=admin.headers
    )

    assert_problem(response, 403)
    role = await conn.fetchval("SELECT role FROM app_user WHERE id = $1", uuid.UUID(target["id"]))
    assert role == "user"


@pytest.mark.parametrize("target_role", ["admin", "superadmin"])
async def test_an_admin_cannot_change_another_admin(
    client: httpx.AsyncClient, conn: asyncpg.Connection, target_role: str
) -> None:
    admin = await user_with_role(client, conn, "admin")
    other = await user_with_role(client, conn, target_role)

    response = await client.patch(
        f"{USERS}/{other.user_id}", json={"is_active": False}, headers=admin.headers
    )

    assert_problem(response, 403)
    active = await conn.fetchval(
        "SELECT is_active FROM app_user WHERE id = $1", uuid.UUID(other.user_id)
    )
    assert active is True
    assert (await client.get(ME, headers=other.headers)).status_code == 200


@pytest.mark.parametrize(
    ("role", "change"),
    [
        ("admin", {"is_active": False}),
        ("superadmin", {"is_active": False}),
        ("superadmin", {"role": "user"}),
    ],
)
async def test_nobody_administers_their_own_account(
    client: httpx.AsyncClient, conn: asyncpg.Connection, role: str, change: dict[str, Any]
) -> None:
    admin = await user_with_role(client, conn, role)

    response = await client.patch(f"{USERS}/{admin.user_id}", json=change, headers=admin.headers)

    assert_problem(response, 403)
    row = await conn.fetchrow(
        "SELECT role, is_active FROM app_user WHERE id = $1", uuid.UUID(admin.user_id)
    )
    assert (row["role"], row["is_active"]) == (role, True)
    assert (await client.get(ME, headers=admin.headers)).status_code == 200


async def test_a_superadmin_promotes_a_user_to_admin(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    superadmin = await user_with_role(client, conn, "superadmin")
    target = await new_user(client)
    assert_problem(await client.get(USERS, headers=target.headers), 403)

    response = await client.patch(
        f"{USERS}/{target.user_id}", json={"role": "admin"}, headers=superadmin.headers
    )

    assert ok_json(response)["role"] == "admin"
    body = ok_json(await client.get(f"{USERS}/{target.user_id}", headers=superadmin.headers))
    assert body["role"] == "admin"
    role = await conn.fetchval("SELECT role FROM app_user WHERE id = $1", uuid.UUID(target.user_id))
    assert role == "admin"
    # The new role applies to the user's existing token at once.
    assert (await client.get(USERS, headers=target.headers)).status_code == 200


async def test_a_superadmin_may_deactivate_an_admin(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    superadmin = await user_with_role(client, conn, "superadmin")
    admin = await user_with_role(client, conn, "admin")

    response = await client.patch(
        f"{USERS}/{admin.user_id}", json={"is_active": False}, headers=superadmin.headers
    )

    assert ok_json(response)["is_active"] is False
    assert_problem(await client.get(USERS, headers=admin.headers), 401)


# --- /auth/events ---------------------------------------------------------------------------


async def test_my_auth_events_are_mine_and_newest_first(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    device = await new_user(client)
    other = await new_user(client)
    await login(client, device.email)
    assert_problem(await login_response(client, device.email, "wrong password"), 401)

    body = ok_json(await client.get(EVENTS, headers=device.headers))

    types = [event["type"] for event in body["data"]]
    assert types == ["login_failed", "login_succeeded", "login_succeeded", "register"]
    assert body["meta"] == {"count": 4, "next_cursor": None}
    stamps = [event["created_at"] for event in body["data"]]
    assert stamps == sorted(stamps, reverse=True)
    mine = {
        str(row["id"])
        for row in await conn.fetch(
            "SELECT id FROM auth_event WHERE user_id = $1", uuid.UUID(device.user_id)
        )
    }
    assert {event["id"] for event in body["data"]} == mine
    theirs = ok_json(await client.get(EVENTS, headers=other.headers))
    assert [event["type"] for event in theirs["data"]] == ["login_succeeded", "register"]
    assert not mine & {event["id"] for event in theirs["data"]}


async def test_my_auth_events_paginate_with_a_cursor(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    device = await new_user(client)
    for _ in range(4):
        await login(client, device.email)
    expected = [
        str(row["id"])
        for row in await conn.fetch(
            "SELECT id FROM auth_event WHERE user_id = $1 ORDER BY created_at DESC, id DESC",
            uuid.UUID(device.user_id),
        )
    ]
    assert len(expected) == 6

    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 4}
        if cursor:
            params["cursor"] = cursor
        body = ok_json(await client.get(EVENTS, params=params, headers=device.headers))
        seen += [event["id"] for event in body["data"]]
        cursor = body["meta"]["next_cursor"]
        if cursor is None:
            break

    assert seen == expected


async def test_an_auth_events_cursor_of_one_user_is_refused_for_another(
    client: httpx.AsyncClient,
) -> None:
    device = await new_user(client)
    other = await new_user(client)
    body = ok_json(await client.get(EVENTS, params={"limit": 1}, headers=device.headers))
    cursor = body["meta"]["next_cursor"]
    assert cursor

    response = await client.get(EVENTS, params={"cursor": cursor}, headers=other.headers)

    assert_problem(response, 400)
    assert (
        await client.get(EVENTS, params={"cursor": cursor}, headers=device.headers)
    ).status_code == 200


@pytest.mark.parametrize("limit", ["0", "101"])
async def test_my_auth_events_reject_a_limit_out_of_range(
    client: httpx.AsyncClient, limit: str
) -> None:
    device = await new_user(client)

    response = await client.get(EVENTS, params={"limit": limit}, headers=device.headers)

    assert_problem(response, 400)
