"""Findings of the outside security review, each held shut: CSRF on cookie-authenticated writes,
bodies that are not JSON, Authorization schemes, caching of private answers, cookie deletion,
per-network limits, look-alike addresses and invisible titles, what a user's log says of staff."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from tests.support.accounts import (
    PASSWORD,
    Device,
    login,
    new_user,
    refresh_with,
    register,
    user_with_role,
)
from tests.support.problems import assert_problem
from tests.support.serving import StartServer
from tests.support.todos import TODOS, create_todo

pytestmark = pytest.mark.anyio

ClientFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]
OWN = "http://testserver"


async def todo_count(conn: asyncpg.Connection, device: Device) -> int:
    count: int = await conn.fetchval(
        'SELECT count(*) FROM todo WHERE "owner" = $1', uuid.UUID(device.user_id)
    )
    return count


# --- 1. CSRF: an unsafe request that the access cookie authenticates -----------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        # Same site, other port or sibling subdomain: SameSite=Strict lets the cookie through.
        {"Origin": "http://testserver:8081"},
        {"Origin": "http://sub.testserver"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "null"},
    ],
)
async def test_a_cookie_authenticated_write_from_another_origin_is_refused(
    client: httpx.AsyncClient, conn: asyncpg.Connection, headers: dict[str, str]
) -> None:
    device = await new_user(client)  # its client holds the HttpOnly access cookie
    todo = await create_todo(device)
    for method, path, body in [
        ("POST", TODOS, {"title": "planted"}),
        ("PATCH", f"{TODOS}/{todo['id']}", {"title": "changed"}),
        ("DELETE", f"{TODOS}/{todo['id']}", None),
        ("POST", f"{TODOS}/{todo['id']}/restore", None),
        (
            "PUT",
            "/api/v1/users/me/password",
            {"current_password": PASSWORD, "new_password": "x" * 12},
        ),
    ]:
        response = await device.client.request(method, path, json=body, headers=headers)
        body_ = assert_problem(response, 403)
        assert "Cross-site" in str(body_["detail"]), (method, path)
    assert await todo_count(conn, device) == 1
    row = await conn.fetchrow(
        "SELECT title, deleted_at FROM todo WHERE id = $1", uuid.UUID(todo["id"])
    )
    assert row is not None
    assert (row["title"], row["deleted_at"]) == (todo["title"], None)
    # Reads stay open to it, and the same write from our own origin goes through.
    assert (await device.client.get(TODOS, headers=headers)).status_code == 200
    own = await device.client.post(TODOS, json={"title": "mine"}, headers={"Origin": OWN})
    assert own.status_code == 201, own.text


async def test_a_bearer_token_is_not_subject_to_the_origin_check(
    client: httpx.AsyncClient,
) -> None:
    device = await new_user(client)
    async with httpx.AsyncClient(transport=client._transport, base_url=OWN) as native:
        response = await native.post(
            TODOS,
            json={"title": "from an app"},
            headers={**device.headers, "Origin": "http://elsewhere.example"},
        )
    assert response.status_code == 201, response.text


async def test_an_allowed_origin_may_write_with_the_cookie(client_with: ClientFactory) -> None:
    async with client_with(ALLOWED_ORIGINS="https://app.example") as c:
        device = await new_user(c)
        response = await device.client.post(
            TODOS,
            json={"title": "from the SPA"},
            headers={"Origin": "https://app.example", "Sec-Fetch-Site": "cross-site"},
        )
    assert response.status_code == 201, response.text


# --- 1. bodies that are not sent as JSON ------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
async def test_a_json_route_refuses_another_media_type_with_415(
    client: httpx.AsyncClient, conn: asyncpg.Connection, content_type: str | None
) -> None:
    device = await new_user(client)
    headers = dict(device.headers)
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = await client.post(TODOS, content=b'{"title": "as a form"}', headers=headers)
    assert_problem(response, 415)
    assert await todo_count(conn, device) == 0


async def test_json_media_types_with_parameters_or_suffixes_are_accepted(
    client: httpx.AsyncClient,
) -> None:
    device = await new_user(client)
    for content_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
        response = await client.post(
            TODOS,
            content=b'{"title": "fine"}',
            headers={**device.headers, "Content-Type": content_type},
        )
        assert response.status_code == 201, (content_type, response.text)


async def test_415_and_the_cross_site_403_are_documented(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/docs/openapi.json")).json()["paths"]
    create = paths["/api/v1/todos"]["post"]["responses"]
    assert {"403", "415"} <= set(create)
    assert "415" not in paths["/api/v1/todos"]["get"]["responses"]


# --- 17. only the Bearer scheme carries an access token ----------------------------------------


async def test_only_the_bearer_scheme_is_read_as_an_access_token(
    client: httpx.AsyncClient,
) -> None:
    device = await new_user(client)
    async with httpx.AsyncClient(transport=client._transport, base_url=OWN) as bare:
        for scheme in ("Basic", "Token", "JWT"):
            response = await bare.get(
                TODOS, headers={"Authorization": f"{scheme} {device.access_token}"}
            )
            assert_problem(response, 401)
        ok = await bare.get(TODOS, headers={"Authorization": f"bearer {device.access_token}"})
        assert ok.status_code == 200


# --- 10. private answers are not cached --------------------------------------------------------


async def test_authenticated_responses_are_not_stored_by_caches(
    client: httpx.AsyncClient,
) -> None:
    device = await new_user(client)
    todo = await create_todo(device)
    for path in (TODOS, f"{TODOS}/{todo['id']}", "/api/v1/users/me", "/api/v1/auth/sessions"):
        response = await client.get(path, headers=device.headers)
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store", path
    assert "no-store" not in (await client.get("/health")).headers.get("cache-control", "")


# --- 11. logout deletes the cookies it set ------------------------------------------------------


async def test_logout_deletes_the_cookies_with_the_attributes_they_were_set_with(
    client_with: ClientFactory,
) -> None:
    async with client_with(COOKIE_SECURE="true") as c:
        user = await register(c)
        signed_in = await c.post(
            "/api/v1/auth/login", json={"login": user["email"], "password": PASSWORD}
        )
        token = signed_in.json()["access_token"]
        response = await c.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 204
    deleting = response.headers.get_list("set-cookie")
    assert len(deleting) == 2
    for name, path in (("__Secure-access_token", "/"), ("__Secure-refresh_token", "/api/v1/auth")):
        cookie = next(c for c in deleting if c.startswith(f"{name}="))
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
        assert {"secure", "httponly", "samesite", "max-age", "path"} <= attributes, cookie
        assert f"Path={path}" in cookie
        assert "Max-Age=0" in cookie
        assert cookie.startswith(f"{name}=;")


# --- 17. limits count a client's IPv6 /64 as one client -----------------------------------------


async def test_the_login_limit_counts_an_ipv6_slash_64_as_one_client(
    client_with: ClientFactory,
) -> None:
    async with client_with(RATE_LIMIT_LOGIN="2/minute", TRUSTED_PROXIES="127.0.0.1") as c:
        user = await register(c)
        answers = []
        for host in ("2001:db8:1:2::1", "2001:db8:1:2::abcd", "2001:db8:1:2:ffff::9"):
            response = await c.post(
                "/api/v1/auth/login",
                json={"login": user["email"], "password": PASSWORD},
                headers={"X-Forwarded-For": host},
            )
            answers.append(response.status_code)
        other = await c.post(
            "/api/v1/auth/login",
            json={"login": user["email"], "password": PASSWORD},
            headers={"X-Forwarded-For": "2001:db8:1:3::1"},
        )
    assert answers == [200, 200, 429]
    assert other.status_code == 200


# --- 12. addresses that look like others, titles that look blank -------------------------------


async def test_a_look_alike_of_a_registered_address_is_the_same_account(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    local = f"user{uuid.uuid4().hex[:8]}"
    await register(client, f"{local}@example.com")
    full_width = "".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in local)
    response = await client.post(
        "/api/v1/auth/register",
        json={"email": f"{full_width}@example.com", "password": PASSWORD},
    )
    assert_problem(response, 409)
    assert await conn.fetchval("SELECT count(*) FROM app_user") == 1
    # And the account signs in however its address is typed.
    device = await login(client, f"{full_width}@EXAMPLE.com")
    assert device.email == f"{local}@example.com"


@pytest.mark.parametrize(
    "email",
    [
        "zero\u200bwidth@example.com",
        "bidi\u202e@example.com",
        "bell\u0007@example.com",
        "<b>bold</b>@example.com",
        '"quoted"@example.com',
        "soft\xadhyphen@example.com",
    ],
)
async def test_addresses_with_invisible_control_or_markup_characters_are_refused(
    client: httpx.AsyncClient, conn: asyncpg.Connection, email: str
) -> None:
    response = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD}
    )
    assert_problem(response, 400)
    assert await conn.fetchval("SELECT count(*) FROM app_user") == 0


@pytest.mark.parametrize("title", ["\u200b", "\u200b\u200c\u200d", " \u2060 ", "\ufeff\xad"])
async def test_a_title_of_only_invisible_characters_is_blank(
    client: httpx.AsyncClient, conn: asyncpg.Connection, title: str
) -> None:
    device = await new_user(client)
    assert_problem(await client.post(TODOS, json={"title": title}, headers=device.headers), 400)
    todo = await create_todo(device)
    patched = await client.patch(
        f"{TODOS}/{todo['id']}", json={"title": title}, headers=device.headers
    )
    assert_problem(patched, 400)
    assert (
        await conn.fetchval("SELECT title FROM todo WHERE id = $1", uuid.UUID(todo["id"]))
        == todo["title"]
    )


# --- 16. a user's security log does not name the staff or admin who acted -----------------------


async def test_the_owners_log_says_staff_or_administrator_not_who(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    target = await new_user(client)
    admin = await user_with_role(client, conn, "admin")
    for active in (False, True):
        response = await client.patch(
            f"/api/v1/users/{target.user_id}", json={"is_active": active}, headers=admin.headers
        )
        assert response.status_code == 200, response.text
    await conn.execute(
        "INSERT INTO auth_event (id, type, user_id, ip, user_agent, detail) VALUES "
        "(gen_random_uuid(), 'logout_all', $1, '', '', '{\"by\": \"staff:ops-alice\", \"count\": 0}')",
        uuid.UUID(target.user_id),
    )
    fresh = await login(client, target.email)
    events = (await client.get("/api/v1/auth/events", headers=fresh.headers)).json()["data"]
    by = [event["detail"]["by"] for event in events if "by" in event["detail"]]
    assert sorted(by) == ["administrator", "administrator", "staff"]
    text = str(events)
    assert "ops-alice" not in text
    assert admin.user_id not in text
    # The stored trail keeps the names, for the operators.
    stored = await conn.fetch(
        "SELECT detail->>'by' AS by FROM auth_event WHERE user_id = $1 AND detail ? 'by'",
        uuid.UUID(target.user_id),
    )
    assert sorted(row["by"] for row in stored) == sorted(
        [admin.user_id, admin.user_id, "staff:ops-alice"]
    )


# --- 6. a refresh token has one spelling ---------------------------------------------------------


async def test_a_refresh_token_is_accepted_only_as_issued(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    device = await new_user(client)
    sid, counter, mac = device.refresh_token.split(".")
    respellings = [
        f"{sid.upper()}.{counter}.{mac}",
        f"{{{sid}}}.{counter}.{mac}",
        f"urn:uuid:{sid}.{counter}.{mac}",
        f"{sid.replace('-', '')}.{counter}.{mac}",
        f"{sid}.0{counter}.{mac}",
        f"{sid}.+{counter}.{mac}",
    ]
    for token in respellings:
        assert_problem(await refresh_with(client, token), 401)
    # None of them counted as a use: the token as issued still rotates, once.
    assert (await refresh_with(client, device.refresh_token)).status_code == 200
    revoked = await conn.fetchval(
        "SELECT revoked_at FROM device_session WHERE id = $1", uuid.UUID(device.session_id)
    )
    assert revoked is None


# --- 2. a re-entered password is limited and audited like a sign-in -----------------------------


async def test_wrong_reentered_passwords_are_audited_and_lock_like_failed_logins(
    client_with: ClientFactory, conn: asyncpg.Connection
) -> None:
    async with client_with(RATE_LIMIT_LOGIN_FAILURES="3/hour") as c:
        device = await new_user(c)
        attempts = [
            (
                "PUT",
                "/api/v1/users/me/password",
                {"current_password": "guess-1-wrong", "new_password": "x" * 12},
            ),
            (
                "PATCH",
                "/api/v1/users/me",
                {"email": "new@example.com", "current_password": "guess-2-wrong"},
            ),
            ("DELETE", "/api/v1/users/me", {"password": "guess-3-wrong"}),
        ]
        for method, path, body in attempts:
            assert_problem(await c.request(method, path, json=body, headers=device.headers), 401)
        # The fourth, even the right password, is refused unchecked; so is a login.
        right = await c.put(
            "/api/v1/users/me/password",
            json={"current_password": PASSWORD, "new_password": "y" * 12},
            headers=device.headers,
        )
        assert_problem(right, 429)
        assert right.headers["Retry-After"] == "3600"
        signin = await c.post(
            "/api/v1/auth/login", json={"login": device.email, "password": PASSWORD}
        )
        assert_problem(signin, 429)
    events = await conn.fetch(
        "SELECT type, session_id, detail->>'action' AS action FROM auth_event "
        "WHERE user_id = $1 AND type = 'password_check_failed' ORDER BY created_at",
        uuid.UUID(device.user_id),
    )
    assert [e["action"] for e in events] == ["password_change", "email_change", "account_deletion"]
    assert {str(e["session_id"]) for e in events} == {device.session_id}
    stored = await conn.fetchrow(
        "SELECT email, password_hash FROM app_user WHERE id = $1", uuid.UUID(device.user_id)
    )
    assert stored is not None
    assert stored["email"] == device.email


async def test_password_changes_are_limited_per_user(client_with: ClientFactory) -> None:
    async with client_with(RATE_LIMIT_REVERIFY="2/minute") as c:
        device, other = await new_user(c), await new_user(c)
        answers = []
        for _ in range(3):
            response = await c.put(
                "/api/v1/users/me/password",
                json={"current_password": "not-it-at-all", "new_password": "z" * 12},
                headers=device.headers,
            )
            answers.append(response.status_code)
        elsewhere = await c.put(
            "/api/v1/users/me/password",
            json={"current_password": "not-it-at-all", "new_password": "z" * 12},
            headers=other.headers,
        )
    assert answers == [401, 401, 429]
    assert elsewhere.status_code == 401


# --- 13. two auth cookies of one name (cookie tossing) -----------------------------------------


async def test_two_access_cookies_of_one_name_are_refused(client: httpx.AsyncClient) -> None:
    mine, planted = await new_user(client), await new_user(client)
    async with httpx.AsyncClient(transport=client._transport, base_url=OWN) as bare:
        one = await bare.get(TODOS, headers={"Cookie": f"access_token={mine.access_token}"})
        assert one.status_code == 200
        for cookie in (
            f"access_token={planted.access_token}; access_token={mine.access_token}",
            f"access_token={mine.access_token}; other=1; access_token={mine.access_token}",
        ):
            body = assert_problem(await bare.get(TODOS, headers={"Cookie": cookie}), 401)
            assert "Two access_token cookies" in str(body["detail"])


async def test_two_refresh_cookies_of_one_name_refresh_nothing(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    mine, planted = await new_user(client), await new_user(client)
    async with httpx.AsyncClient(
        transport=client._transport,
        base_url=OWN,
        headers={
            "Cookie": f"refresh_token={planted.refresh_token}; refresh_token={mine.refresh_token}"
        },
    ) as bare:
        assert_problem(await bare.post("/api/v1/auth/refresh"), 401)
    rows = await conn.fetch(
        "SELECT refresh_counter, revoked_at FROM device_session WHERE id = ANY($1::uuid[])",
        [uuid.UUID(mine.session_id), uuid.UUID(planted.session_id)],
    )
    assert [(row["refresh_counter"], row["revoked_at"]) for row in rows] == [(0, None), (0, None)]
    # Each token alone still works.
    assert (await refresh_with(client, mine.refresh_token)).status_code == 200


# --- 5. request heads of any size ---------------------------------------------------------------


def raw_request(url: str, head: bytes, body: bytes = b"") -> bytes:
    """Send bytes as they are over one connection; all that comes back before it closes (a
    server that closes with our bytes unread resets the connection, which may cut its answer)."""
    parts = urlsplit(url)
    answer = b""
    with (
        socket.create_connection((parts.hostname, parts.port), timeout=10) as sock,
        contextlib.suppress(ConnectionResetError, BrokenPipeError),
    ):
        sock.sendall(head + body)
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


async def test_an_oversized_request_head_is_431_and_the_server_carries_on(
    database_url: str, start_server: StartServer
) -> None:
    server = start_server(database_url, MAX_HEADER_BYTES="16384")
    await server.wait_ready()
    huge = b"x" * (1024 * 1024)
    for head in (
        b"GET /health HTTP/1.1\r\nHost: a\r\nX-Big: " + huge + b"\r\nConnection: close\r\n\r\n",
        b"GET /health?" + huge + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: a\r\n" + b"X-Many: 1\r\n" * 4000 + b"\r\n",
    ):
        answer = await asyncio.to_thread(raw_request, server.url, head)
        # 431, or the connection closed on us before the answer arrived: never served.
        assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer[:80]
    # Just under the bound, and a body far larger than it, are served as usual.
    fits = (
        b"GET /health HTTP/1.1\r\nHost: a\r\nX-Big: "
        + b"y" * 15000
        + b"\r\nConnection: close\r\n\r\n"
    )
    assert (await asyncio.to_thread(raw_request, server.url, fits)).startswith(b"HTTP/1.1 200 ")
    body = b'{"email": "big-body@example.com", "password": "' + b"p" * 900 + b'"}'
    post = (
        b"POST /api/v1/auth/register HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body) * 40).encode() + b"\r\nConnection: close\r\n\r\n"
    )
    padded = body + b" " * (len(body) * 39)  # JSON allows trailing whitespace
    answer = await asyncio.to_thread(raw_request, server.url, post, padded)
    assert answer.startswith(b"HTTP/1.1 201 "), answer[:200]
    async with httpx.AsyncClient(base_url=server.url) as c:
        assert (await c.get("/health")).status_code == 200
