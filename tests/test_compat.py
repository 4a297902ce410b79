"""What clients and operators of the FastAPI to-do backends we replace rely on: PUT and
`is_completed`, their users' password hashes, their configuration spellings, migrating back."""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import asyncpg
import bcrypt
import httpx
import pytest

from tests.support.accounts import PASSWORD, Device, login, new_user, unique_email
from tests.support.cli import run_cli
from tests.support.problems import assert_problem
from tests.support.todos import TODOS, create_todo
from todo_api.core.config import SettingsError, load_settings

pytestmark = pytest.mark.anyio

GOOD_PROD = {
    "APP_ENV": "prod",
    "SECRET_KEY": "a-long-enough-production-secret-0123456789abcdef",
    "DATABASE_URL": "postgresql://app@db/todo",
}


# --- PATCH and PUT with is_completed ----------------------------------------------------------


async def test_patch_is_completed_sets_completed_at_once_and_reopening_clears_it(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    device = await new_user(client)
    todo = await create_todo(device)
    url = f"{TODOS}/{todo['id']}"

    done = await client.patch(url, json={"is_completed": True}, headers=device.headers)
    assert done.status_code == 200, done.text
    first = done.json()
    assert first["is_completed"] is True
    assert first["completed_at"] is not None
    assert first["version"] == todo["version"] + 1
    assert done.headers["ETag"] == f'"{first["version"]}"'

    # Completing again (with another change) keeps the first completed_at.
    again = await client.patch(
        url, json={"is_completed": True, "title": "Buy oat milk"}, headers=device.headers
    )
    assert again.status_code == 200
    assert again.json()["completed_at"] == first["completed_at"]
    assert again.json()["title"] == "Buy oat milk"

    # Completing again alone changes nothing, as /complete does.
    unchanged = await client.patch(url, json={"is_completed": True}, headers=device.headers)
    assert unchanged.json()["version"] == again.json()["version"]

    reopened = await client.patch(url, json={"is_completed": False}, headers=device.headers)
    assert reopened.status_code == 200
    assert reopened.json()["is_completed"] is False
    assert reopened.json()["completed_at"] is None
    row = await conn.fetchrow(
        "SELECT is_completed, completed_at FROM todo WHERE id = $1", uuid.UUID(todo["id"])
    )
    assert row is not None
    assert (row["is_completed"], row["completed_at"]) == (False, None)


async def test_put_is_a_partial_update_with_if_match_and_etag(client: httpx.AsyncClient) -> None:
    device = await new_user(client)
    todo = await create_todo(device, notes="keep me")
    url = f"{TODOS}/{todo['id']}"

    response = await client.put(
        url,
        json={"title": "Renamed", "is_completed": True},
        headers={**device.headers, "If-Match": f'"{todo["version"]}"'},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["title"] == "Renamed"
    assert body["is_completed"] is True
    assert body["notes"] == "keep me"  # absent fields are unchanged
    assert response.headers["ETag"] == f'"{body["version"]}"'

    stale = await client.put(
        url,
        json={"title": "Again"},
        headers={**device.headers, "If-Match": f'"{todo["version"]}"'},
    )
    assert_problem(stale, 412)
    assert stale.headers["ETag"] == f'"{body["version"]}"'
    assert (await client.get(url, headers=device.headers)).json()["title"] == "Renamed"


async def test_put_refuses_bad_input_and_other_users_todos(client: httpx.AsyncClient) -> None:
    owner, other = await new_user(client), await new_user(client)
    todo = await create_todo(owner)
    url = f"{TODOS}/{todo['id']}"
    assert_problem(await client.put(url, json={"title": "Mine now"}, headers=other.headers), 404)
    assert_problem(await client.put(url, json={"owner": "x"}, headers=owner.headers), 400)
    assert_problem(await client.put(url, json={"is_completed": "yes"}, headers=owner.headers), 400)
    malformed = {**owner.headers, "Content-Type": "application/json"}
    assert_problem(await client.put(url, content=b"{", headers=malformed), 400)
    assert_problem(await client.put(url, json={"title": "x"}), 401)
    assert (await client.get(url, headers=owner.headers)).json()["title"] == todo["title"]


async def test_put_is_documented_like_the_other_writes(client: httpx.AsyncClient) -> None:
    document = (await client.get("/docs/openapi.json")).json()
    operation = document["paths"]["/api/v1/todos/{todo_id}"]["put"]
    assert operation["operationId"] == "PutTodo"
    assert {"200", "400", "401", "404", "412"} <= set(operation["responses"])
    assert any(parameter["name"] == "If-Match" for parameter in operation["parameters"])
    update = document["components"]["schemas"]["TodoUpdate"]
    assert "is_completed" in update["properties"]


# --- accounts with another backend's password hashes ------------------------------------------


def passlib_pbkdf2_sha256(password: str, rounds: int = 29000) -> str:
    """A hash as passlib's pbkdf2_sha256 writes it (its base64: "." for "+", no padding)."""
    salt = os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, rounds, 32)

    def ab64(raw: bytes) -> str:
        return base64.b64encode(raw).decode().rstrip("=").replace("+", ".")

    return f"$pbkdf2-sha256${rounds}${ab64(salt)}${ab64(digest)}"


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("email,hashed_password,is_active,full_name\n" + "\n".join(rows) + "\n")
    return path


async def stored_hash(conn: asyncpg.Connection, email: str) -> str:
    value: str = await conn.fetchval("SELECT password_hash FROM app_user WHERE email = $1", email)
    return value


@pytest.mark.parametrize("scheme", ["$2b$", "$2a$", "$2y$", "pbkdf2-sha256"])
async def test_an_imported_account_logs_in_and_its_hash_becomes_argon2id(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    database_url: str,
    tmp_path: Path,
    scheme: str,
) -> None:
    email = unique_email("imported")
    if scheme == "pbkdf2-sha256":
        legacy = passlib_pbkdf2_sha256(PASSWORD)
    else:
        legacy = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
        legacy = scheme + legacy[4:]
    csv_file = write_csv(tmp_path / "users.csv", [f"{email.upper()},{legacy},true,Imported One"])

    result = run_cli(database_url, "import-users", str(csv_file))
    assert result.returncode == 0, result.stderr
    assert "created 1 accounts" in result.stdout
    assert legacy not in result.stdout + result.stderr
    assert await stored_hash(conn, email) == legacy

    wrong = await client.post("/api/v1/auth/login", json={"login": email, "password": "nope-" * 3})
    assert_problem(wrong, 401)
    assert await stored_hash(conn, email) == legacy

    device = await login(client, email)
    assert device.email == email
    assert (await stored_hash(conn, email)).startswith("$argon2id$")
    me = await client.get("/api/v1/users/me", headers=device.headers)
    assert me.json()["display_name"] == "Imported One"
    # The new hash verifies the same password again.
    await login(client, email)
    event = await conn.fetchval(
        "SELECT count(*) FROM auth_event WHERE type = 'account_imported' AND user_id = $1",
        uuid.UUID(device.user_id),
    )
    assert event == 1


async def test_an_import_with_one_bad_row_writes_nothing(
    conn: asyncpg.Connection, database_url: str, tmp_path: Path
) -> None:
    good = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    csv_file = write_csv(
        tmp_path / "users.csv",
        [
            f"{unique_email()},{good},true,",
            f"{unique_email()},md5$abc$def,true,",
            f"not-an-email,{good},true,",
        ],
    )
    result = run_cli(database_url, "import-users", str(csv_file))
    assert result.returncode != 0
    assert "row 2" in result.stderr
    assert "row 3" in result.stderr
    assert "row 1" not in result.stderr
    assert good not in result.stderr
    assert await conn.fetchval("SELECT count(*) FROM app_user") == 0


async def test_import_from_a_database_query_skips_accounts_already_here(
    client: httpx.AsyncClient, conn: asyncpg.Connection, database_url: str
) -> None:
    existing = await new_user(client)
    newcomer = unique_email("from-db")
    legacy = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    await conn.execute(
        "CREATE TABLE legacy_user (email text, hashed_password text, is_active bool, "
        "is_superuser bool)"
    )
    await conn.executemany(
        "INSERT INTO legacy_user VALUES ($1, $2, $3, $4)",
        [(newcomer, legacy, False, True), (existing.email, legacy, True, False)],
    )
    result = run_cli(
        database_url,
        "import-users",
        "--from-database",
        database_url,
        "--query",
        "SELECT email, hashed_password, is_active, is_superuser FROM legacy_user",
    )
    assert result.returncode == 0, result.stderr
    assert "created 1 accounts, skipped 1 already present" in result.stdout
    row = await conn.fetchrow("SELECT role, is_active FROM app_user WHERE email = $1", newcomer)
    assert row is not None
    assert (row["role"], row["is_active"]) == ("superadmin", False)
    # Inactive accounts are imported inactive: they cannot log in.
    response = await client.post(
        "/api/v1/auth/login", json={"login": newcomer, "password": PASSWORD}
    )
    assert_problem(response, 401)


async def test_a_stored_hash_in_an_unknown_format_fails_like_a_wrong_password(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    device: Device = await new_user(client)
    for unknown in ("$1$abc$def", "plaintext", "$2b$04$short", "$pbkdf2-sha256$x$y$z"):
        await conn.execute(
            "UPDATE app_user SET password_hash = $1 WHERE id = $2",
            unknown,
            uuid.UUID(device.user_id),
        )
        response = await client.post(
            "/api/v1/auth/login", json={"login": device.email, "password": PASSWORD}
        )
        assert_problem(response, 401)
        assert await stored_hash(conn, device.email) == unknown


# --- configuration as they write it -----------------------------------------------------------


def test_list_settings_accept_json_arrays_and_comma_lists() -> None:
    as_json = load_settings({"ALLOWED_ORIGINS": '["https://app.example", "http://localhost:5173"]'})
    as_list = load_settings({"ALLOWED_ORIGINS": "https://app.example, http://localhost:5173"})
    assert (
        as_json.allowed_origins
        == as_list.allowed_origins
        == (
            "https://app.example",
            "http://localhost:5173",
        )
    )
    assert load_settings({"TRUSTED_PROXIES": '["10.0.0.2"]'}).trusted_proxies == ("10.0.0.2",)
    with pytest.raises(SettingsError, match="ALLOWED_ORIGINS"):
        load_settings({"ALLOWED_ORIGINS": '["https://app.example", 3]'})
    with pytest.raises(SettingsError, match="ALLOWED_ORIGINS"):
        load_settings({"ALLOWED_ORIGINS": '["https://app.example"'})


def test_sqlalchemy_database_urls_are_read_as_plain_postgresql() -> None:
    settings = load_settings({"DATABASE_URL": "postgresql+asyncpg://app:secret@db:5432/todo"})
    assert settings.database_url == "postgresql://app:secret@db:5432/todo"
    with pytest.raises(SettingsError, match="DATABASE_URL"):
        load_settings({"DATABASE_URL": "mysql+aiomysql://app@db/todo"})


@pytest.mark.parametrize(
    ("variable", "ours"),
    [
        ("JWT_SECRET", "SECRET_KEY"),
        ("CORS_ORIGINS", "ALLOWED_ORIGINS"),
        ("BACKEND_CORS_ORIGINS", "ALLOWED_ORIGINS"),
        ("SQLALCHEMY_DATABASE_URI", "DATABASE_URL"),
        ("ALGORITHM", "HS256"),
    ],
)
def test_their_variable_names_stop_prod_and_warn_in_dev(
    variable: str, ours: str, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings({**GOOD_PROD, variable: "their value"})
    assert variable in str(refused.value)
    assert ours in str(refused.value)
    assert "their value" not in str(refused.value)

    settings = load_settings({variable: "their value"})
    assert settings.app_env == "dev"
    assert any(variable in r.getMessage() and ours in r.getMessage() for r in caplog.records)


async def test_cors_matches_an_origin_given_as_a_json_array(
    client_with: Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]],
) -> None:
    async with client_with(ALLOWED_ORIGINS='["https://app.example"]') as c:
        preflight = await c.options(
            TODOS,
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "PUT",
            },
        )
    assert preflight.status_code in (200, 204)
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"


async def test_the_app_serves_on_a_sqlalchemy_style_database_url(
    client_with: Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]], database_url: str
) -> None:
    sqlalchemy_url = database_url.replace("postgresql://", "postgresql+asyncpg://", 1)
    async with client_with(DATABASE_URL=sqlalchemy_url) as c:
        ready = await c.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "database": "ok"}


def test_the_cli_names_our_variable_for_theirs(database_url: str) -> None:
    prod = run_cli(database_url, "check-settings", env={**GOOD_PROD, "JWT_SECRET": "x" * 40})
    assert prod.returncode != 0
    assert "JWT_SECRET" in prod.stderr
    assert "SECRET_KEY" in prod.stderr
    dev = run_cli(
        database_url,
        "check-settings",
        env={"APP_ENV": "dev", "CORS_ORIGINS": "https://app.example"},
    )
    assert dev.returncode == 0, dev.stderr
    assert "CORS_ORIGINS" in dev.stderr
    assert "ALLOWED_ORIGINS" in dev.stderr


# --- migrating back ---------------------------------------------------------------------------


async def test_migrate_down_reverses_the_last_migration_and_migrate_reapplies_it(
    database_url: str, conn: asyncpg.Connection
) -> None:
    last = await conn.fetchval(
        "SELECT name FROM migration WHERE app_name = 'todo_api' ORDER BY id DESC LIMIT 1"
    )
    triggers = "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal AND tgname LIKE '%notify%'"
    before = await conn.fetchval(triggers)
    assert before > 0

    down = run_cli(database_url, "migrate-down")
    assert down.returncode == 0, down.stderr
    assert f"reversed {last}" in down.stdout
    assert await conn.fetchval("SELECT count(*) FROM migration WHERE name = $1", last) == 0
    assert await conn.fetchval(triggers) == 0

    up = run_cli(database_url, "migrate")
    assert up.returncode == 0, up.stderr
    assert await conn.fetchval("SELECT count(*) FROM migration WHERE name = $1", last) == 1
    assert await conn.fetchval(triggers) == before


async def test_migrate_down_takes_a_count(database_url: str, conn: asyncpg.Connection) -> None:
    count = "SELECT count(*) FROM migration WHERE app_name = 'todo_api'"
    total = await conn.fetchval(count)
    applied = await conn.fetch(
        "SELECT name FROM migration WHERE app_name = 'todo_api' ORDER BY id DESC LIMIT 2"
    )
    down = run_cli(database_url, "migrate-down", "2")
    assert down.returncode == 0, down.stderr
    for row in applied:
        assert f"reversed {row['name']}" in down.stdout
    assert await conn.fetchval(count) == total - 2
    assert run_cli(database_url, "migrate").returncode == 0
    assert await conn.fetchval(count) == total
