"""The admin UI at /admin/: staff sign-in with CSRF, no secrets, read-only tables, operator forms."""

from __future__ import annotations

import re
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support.accounts import PASSWORD, Device, fresh_jar, login, new_user
from tests.support.cli import run_cli
from tests.support.todos import create_todo
from todo_api.ops.admin import StaffUser, save_staff_user

pytestmark = [
    pytest.mark.anyio,
    # Piccolo warns on every login that `production` is off (it is on when COOKIE_SECURE is).
    pytest.mark.filterwarnings("ignore:If running sessions in production:UserWarning"),
]

STAFF = "ops"
STAFF_PASSWORD = "staff passphrase 0123"
ME = "/api/v1/users/me"
SECRETS = ("password_hash", "refresh_salt")
# The tables the admin offers.
ADMIN_TABLES = ["app_user", "auth_event", "device_session", "todo"]


def csrf_headers(browser: httpx.AsyncClient, **extra: str) -> dict[str, str]:
    """What the admin's JavaScript sends on unsafe requests: the csrftoken cookie as a header."""
    return {"X-CSRFToken": browser.cookies["csrftoken"], **extra}


async def staff_login(
    client: httpx.AsyncClient, username: str = STAFF, password: str = STAFF_PASSWORD
) -> httpx.AsyncClient:
    """Sign in as the SPA does: load /admin/ (sets the CSRF cookie), then POST the login."""
    browser = fresh_jar(client)
    assert (await browser.get("/admin/")).status_code == 200
    response = await browser.post(
        "/admin/public/login/",
        json={"username": username, "password": password},
        headers=csrf_headers(browser),
    )
    assert response.status_code == 200, response.text
    return browser


@pytest.fixture
async def staff(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """A signed-in staff superuser's browser."""
    await save_staff_user(STAFF, STAFF_PASSWORD)
    browser = await staff_login(client)
    yield browser
    await browser.aclose()


async def submit_form(staff: httpx.AsyncClient, slug: str, data: dict[str, Any]) -> httpx.Response:
    return await staff.post(f"/admin/api/forms/{slug}/", json=data, headers=csrf_headers(staff))


async def status_of_me(device: Device) -> int:
    return (await device.client.get(ME, headers=device.headers)).status_code


# --- mounting ------------------------------------------------------------------------------


async def test_admin_serves_the_single_page_app(client: httpx.AsyncClient) -> None:
    page = await client.get("/admin/")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<div id="app">' in page.text
    for asset in re.findall(r'(?:src|href)="\./(assets/[^"]+)"', page.text):
        response = await client.get(f"/admin/{asset}")
        assert response.status_code == 200, asset
        assert len(response.content) > 1000
    # Without the slash, relative asset URLs would miss the mount: redirect.
    bare = await client.get("/admin")
    assert bare.status_code == 308
    assert bare.headers["location"] == "admin/"
    assert (await client.get("/admin/public/meta/")).json()["site_name"] == "todo-api admin"


ADMIN_API = [
    ("GET", "/admin/api/tables/"),
    ("GET", "/admin/api/tables/app_user/"),
    ("GET", "/admin/api/tables/device_session/"),
    ("GET", "/admin/api/tables/todo/schema/"),
    ("GET", "/admin/api/user/"),
    ("GET", "/admin/api/forms/"),
    ("POST", "/admin/api/forms/deactivate-user/"),
]


@pytest.mark.parametrize(("method", "path"), ADMIN_API)
async def test_the_admin_api_refuses_anyone_but_signed_in_staff(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    await save_staff_user(STAFF, STAFF_PASSWORD)
    # A Piccolo user without the admin flag signs in, but is not staff.
    await StaffUser.insert(
        StaffUser(username="visitor", password=STAFF_PASSWORD, email="v@x.invalid", active=True)
    )
    visitor = await staff_login(client, "visitor")
    api_user = await new_user(client)
    anonymous = fresh_jar(client)
    await anonymous.get("/admin/")  # a CSRF cookie, so only the missing session is in the way

    for browser, headers in (
        (anonymous, csrf_headers(anonymous)),
        (visitor, csrf_headers(visitor)),
        (anonymous, {**csrf_headers(anonymous), **api_user.headers}),  # an API token is no staff
    ):
        json = {"account": api_user.email} if method == "POST" else None
        response = await browser.request(method, path, headers=headers, json=json)
        assert response.status_code in (401, 403), (path, response.status_code)
        assert api_user.email not in response.text
    assert await status_of_me(api_user) == 200


# --- staff sign-in -------------------------------------------------------------------------


async def test_staff_sign_in_needs_the_csrf_token_and_the_right_password(
    client: httpx.AsyncClient,
) -> None:
    await save_staff_user(STAFF, STAFF_PASSWORD)
    credentials = {"username": STAFF, "password": STAFF_PASSWORD}
    browser = fresh_jar(client)

    # No CSRF cookie yet (the page was never loaded): refused before the password is looked at.
    response = await browser.post("/admin/public/login/", json=credentials)
    assert response.status_code == 403
    await browser.get("/admin/")
    assert "csrftoken" in browser.cookies
    # A cookie but no header (what a cross-site form post could manage), or the wrong header.
    assert (await browser.post("/admin/public/login/", json=credentials)).status_code == 403
    wrong = {"X-CSRFToken": str(uuid.uuid4())}
    assert (
        await browser.post("/admin/public/login/", json=credentials, headers=wrong)
    ).status_code == 403
    # The right token and a wrong password.
    bad = {**credentials, "password": "not the password"}
    response = await browser.post("/admin/public/login/", json=bad, headers=csrf_headers(browser))
    assert response.status_code == 401
    assert (await browser.get("/admin/api/user/")).status_code == 401

    response = await browser.post(
        "/admin/public/login/", json=credentials, headers=csrf_headers(browser)
    )
    assert response.status_code == 200, response.text
    me = await browser.get("/admin/api/user/")
    assert me.status_code == 200
    assert me.json()["username"] == STAFF
    # Forms need the token too, signed in or not.
    response = await browser.post("/admin/api/forms/deactivate-user/", json={"account": "x"})
    assert response.status_code == 403

    response = await browser.post("/admin/public/logout/", headers=csrf_headers(browser))
    assert response.status_code in (200, 303)
    assert (await browser.get("/admin/api/user/")).status_code == 401


async def test_over_https_a_post_must_come_from_the_admins_own_origin(
    client: httpx.AsyncClient,
) -> None:
    await save_staff_user(STAFF, STAFF_PASSWORD)
    credentials = {"username": STAFF, "password": STAFF_PASSWORD}
    browser = fresh_jar(client, base_url="https://admin.example.com")
    await browser.get("/admin/")

    for origin in ("https://evil.example", None):
        headers = csrf_headers(browser)
        if origin:
            headers["Origin"] = origin
        response = await browser.post("/admin/public/login/", json=credentials, headers=headers)
        assert response.status_code == 403, origin
        assert response.text == "Referer or origin is incorrect"

    headers = csrf_headers(browser, Origin="https://admin.example.com")
    response = await browser.post("/admin/public/login/", json=credentials, headers=headers)
    assert response.status_code == 200, response.text


# --- what staff see --------------------------------------------------------------------------


def assert_no_secret_in(response: httpx.Response, *values: str) -> None:
    """Neither a secret column nor a secret value appears in the response."""
    assert response.status_code == 200, (response.request.url, response.text)
    for text in (*SECRETS, *values):
        assert text not in response.text, (response.request.url, text)


async def test_the_admin_never_shows_password_hashes_or_refresh_salts(
    client: httpx.AsyncClient, staff: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    user = await new_user(client)
    password_hash = await conn.fetchval(
        "SELECT password_hash FROM app_user WHERE id = $1", uuid.UUID(user.user_id)
    )
    salt = await conn.fetchval(
        "SELECT refresh_salt FROM device_session WHERE id = $1", uuid.UUID(user.session_id)
    )
    leaks = (password_hash, salt)

    for table, row_id, secret in (
        ("app_user", user.user_id, "password_hash"),
        ("device_session", user.session_id, "refresh_salt"),
    ):
        base = f"/admin/api/tables/{table}"
        listing = await staff.get(f"{base}/", params={"__readable": "true"})
        assert listing.status_code == 200
        assert [row["id"] for row in listing.json()["rows"]] == [row_id]
        assert_no_secret_in(listing, *leaks)
        for path in ("schema/", "new/", f"{row_id}/", "ids/", "references/", "count/"):
            assert_no_secret_in(await staff.get(f"{base}/{path}"), *leaks)
        assert_no_secret_in(await staff.get(f"{base}/{row_id}/?__readable=true"), *leaks)
        # Asking for the column, filtering or sorting by it: it does not exist here (Piccolo
        # answers an unknown sort column with a 500 rather than a 400).
        for params in ({"__visible_fields": secret}, {secret: "a"}, {"__order": secret}):
            response = await staff.get(f"{base}/", params=params)
            assert response.status_code in (400, 500), (params, response.text)
            assert all(value not in response.text for value in leaks)
        # The joined user of a session shows as its email, not as a row with a hash.
        assert_no_secret_in(await staff.get(f"{base}/?__visible_fields=id"), *leaks)

    sessions = await staff.get("/admin/api/tables/device_session/", params={"__readable": "true"})
    assert sessions.json()["rows"][0]["user_readable"] == user.email
    # The tables the admin offers, and nothing else (no idempotency keys, no staff tables).
    tables = await staff.get("/admin/api/tables/")
    assert sorted(tables.json()) == ADMIN_TABLES


async def test_staff_find_a_users_todos_sessions_and_events(
    client: httpx.AsyncClient, staff: httpx.AsyncClient
) -> None:
    user = await new_user(client)
    other = await new_user(client)
    for device, title in ((user, "Buy milk"), (other, "Walk the dog")):
        await create_todo(device, title)

    todos = await staff.get(
        "/admin/api/tables/todo/", params={"owner": user.user_id, "__readable": "true"}
    )
    assert [(t["title"], t["owner_readable"]) for t in todos.json()["rows"]] == [
        ("Buy milk", user.email)
    ]
    search = await staff.get("/admin/api/tables/todo/", params={"title": "dog"})
    assert [t["title"] for t in search.json()["rows"]] == ["Walk the dog"]
    users = await staff.get("/admin/api/tables/app_user/", params={"email": user.email[:12]})
    assert [u["email"] for u in users.json()["rows"]] == [user.email]
    events = await staff.get(
        "/admin/api/tables/auth_event/", params={"user_id": user.user_id, "type": "login"}
    )
    assert [e["type"] for e in events.json()["rows"]] == ["login_succeeded"]
    schema = (await staff.get("/admin/api/tables/device_session/schema/")).json()
    assert "revoked_at" in schema["extra"]["visible_column_names"]


# --- what staff may change -----------------------------------------------------------------


@pytest.mark.parametrize("table", ADMIN_TABLES)
async def test_rows_cannot_be_written_through_the_admin_api(
    client: httpx.AsyncClient, staff: httpx.AsyncClient, conn: asyncpg.Connection, table: str
) -> None:
    user = await new_user(client)
    await create_todo(user, "x")
    row_id = await conn.fetchval(f"SELECT id FROM {table} ORDER BY id LIMIT 1")
    before = await conn.fetch(f"SELECT * FROM {table} ORDER BY id")
    base = f"/admin/api/tables/{table}"
    headers = csrf_headers(staff)

    for method, path, body in (
        ("PATCH", f"{base}/{row_id}/", {"ip": "1.2.3.4", "is_active": False, "title": "y"}),
        ("PUT", f"{base}/{row_id}/", {"ip": "1.2.3.4", "is_active": False, "title": "y"}),
        ("DELETE", f"{base}/{row_id}/", None),
        ("POST", f"{base}/", {"type": "login_succeeded", "email": "a@b.cd", "title": "z"}),
        ("DELETE", f"{base}/", None),
    ):
        response = await staff.request(method, path, json=body, headers=headers)
        assert response.status_code == 405, (method, path, response.text)

    assert await conn.fetch(f"SELECT * FROM {table} ORDER BY id") == before
    assert await status_of_me(user) == 200


async def test_revoking_a_session_in_the_admin_logs_out_that_device_at_once(
    client: httpx.AsyncClient, staff: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    phone = await new_user(client)
    laptop = await login(client, phone.email)
    assert await status_of_me(phone) == 200

    response = await submit_form(staff, "revoke-device-session", {"session_id": phone.session_id})

    assert response.status_code == 200, response.text
    assert "Revoked the session" in response.json()["custom_form_success"]
    assert await status_of_me(phone) == 401
    refreshed = await phone.client.post("/api/v1/auth/refresh")
    assert refreshed.status_code == 401
    assert await status_of_me(laptop) == 200
    row = await conn.fetchrow(
        "SELECT revoked_at, revoke_reason FROM device_session WHERE id = $1",
        uuid.UUID(phone.session_id),
    )
    assert row["revoked_at"] is not None
    assert row["revoke_reason"] == "revoked_by_staff"
    event = await conn.fetchrow(
        "SELECT user_id, detail FROM auth_event WHERE type = 'session_revoked' AND session_id = $1",
        uuid.UUID(phone.session_id),
    )
    assert str(event["user_id"]) == phone.user_id
    assert '"by": "staff:ops"' in event["detail"]

    again = await submit_form(staff, "revoke-device-session", {"session_id": phone.session_id})
    assert again.status_code == 422
    assert again.json() == {"custom_form_error": "This session is already revoked."}
    unknown = await submit_form(staff, "revoke-device-session", {"session_id": str(uuid.uuid4())})
    assert unknown.json() == {"custom_form_error": "No session has this id."}
    malformed = await submit_form(staff, "revoke-device-session", {"session_id": "nope"})
    assert malformed.status_code == 422


async def test_sign_out_everywhere_revokes_every_session_of_the_account(
    client: httpx.AsyncClient, staff: httpx.AsyncClient
) -> None:
    phone = await new_user(client, username="grace")
    laptop = await login(client, phone.email)
    bystander = await new_user(client)

    response = await submit_form(staff, "sign-out-everywhere", {"account": "Grace"})

    assert response.json() == {"custom_form_success": f"Revoked 2 session(s) of {phone.email}."}
    assert [await status_of_me(d) for d in (phone, laptop, bystander)] == [401, 401, 200]
    await login(client, phone.email)  # still allowed to log in again


async def test_deactivating_a_user_in_the_admin_locks_the_account_at_once(
    client: httpx.AsyncClient, staff: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    phone = await new_user(client)
    laptop = await login(client, phone.email)
    bystander = await new_user(client)

    response = await submit_form(staff, "deactivate-user", {"account": phone.email.upper()})

    assert response.status_code == 200, response.text
    assert response.json()["custom_form_success"] == (
        f"Deactivated {phone.email} and revoked 2 session(s)."
    )
    assert [await status_of_me(d) for d in (phone, laptop, bystander)] == [401, 401, 200]
    denied = await client.post(
        "/api/v1/auth/login", json={"login": phone.email, "password": PASSWORD}
    )
    assert denied.status_code == 401
    rows = await conn.fetch(
        'SELECT revoke_reason FROM device_session WHERE "user" = $1', uuid.UUID(phone.user_id)
    )
    assert [row["revoke_reason"] for row in rows] == ["deactivated", "deactivated"]
    assert not await conn.fetchval(
        "SELECT is_active FROM app_user WHERE id = $1", uuid.UUID(phone.user_id)
    )

    response = await submit_form(staff, "reactivate-user", {"account": phone.user_id})
    assert response.json() == {"custom_form_success": f"Reactivated {phone.email}."}
    assert await status_of_me(phone) == 401  # revoked sessions stay revoked
    await login(client, phone.email)
    events = await conn.fetch(
        "SELECT detail FROM auth_event WHERE type = 'user_administered' AND user_id = $1 "
        "ORDER BY created_at",
        uuid.UUID(phone.user_id),
    )
    assert ['"is_active": false' in e["detail"] for e in events] == [True, False]

    missing = await submit_form(staff, "deactivate-user", {"account": "nobody@example.com"})
    assert missing.json() == {"custom_form_error": "No account has this email, username or id."}


# --- staff accounts from the command line --------------------------------------------------


async def test_admin_user_creates_a_staff_superuser_then_resets_its_password(
    client: httpx.AsyncClient, database_url: str, conn: asyncpg.Connection
) -> None:
    result = run_cli(database_url, "admin-user", "ops", STAFF_PASSWORD)

    assert result.returncode == 0, result.stderr
    assert "created staff user ops" in result.stdout
    assert STAFF_PASSWORD not in result.stdout + result.stderr
    row = await conn.fetchrow(
        "SELECT active, admin, superuser, password FROM piccolo_user WHERE username = 'ops'"
    )
    assert (row["active"], row["admin"], row["superuser"]) == (True, True, True)
    assert row["password"].startswith("pbkdf2_sha256$")
    browser = await staff_login(client)

    result = run_cli(database_url, "admin-user", "ops", "a new staff passphrase")

    assert result.returncode == 0, result.stderr
    assert "updated staff user ops" in result.stdout
    assert (await browser.get("/admin/api/user/")).status_code == 401  # signed out
    fresh = fresh_jar(client)
    await fresh.get("/admin/")
    old = await fresh.post(
        "/admin/public/login/",
        json={"username": "ops", "password": STAFF_PASSWORD},
        headers=csrf_headers(fresh),
    )
    assert old.status_code == 401
    await staff_login(client, "ops", "a new staff passphrase")

    too_short = run_cli(database_url, "admin-user", "ops2", "short")
    assert too_short.returncode != 0
    assert "too short" in too_short.stderr
    assert await conn.fetchval("SELECT count(*) FROM piccolo_user") == 1


async def test_admin_user_without_arguments_prompts(
    client: httpx.AsyncClient, database_url: str, conn: asyncpg.Connection
) -> None:
    answers = f"prompted\n{STAFF_PASSWORD}\n{STAFF_PASSWORD}\n"
    result = run_cli(database_url, "admin-user", stdin=answers)

    assert result.returncode == 0, result.stderr
    assert "created staff user prompted" in result.stdout
    assert await conn.fetchval(
        "SELECT admin AND superuser AND active FROM piccolo_user WHERE username = 'prompted'"
    )
    await staff_login(client, "prompted")

    mismatch = run_cli(database_url, "admin-user", stdin=f"other\n{STAFF_PASSWORD}\nnope nope\n")
    assert mismatch.returncode != 0
    assert "do not match" in mismatch.stderr
