"""Logs: one JSON line per request with who/what/how long, and never a secret."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator

import asyncpg
import httpx
import pytest

from tests.support.accounts import login, refresh_with, register
from todo_api.web.logs import ConsoleFormatter, JsonFormatter

pytestmark = pytest.mark.anyio


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict[str, object]]]]:
    """Everything logged at DEBUG and above, through the production JSON formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def request_lines(lines: list[dict[str, object]]) -> list[dict[str, object]]:
    return [line for line in lines if line["logger"] == "todo_api.web.request"]


async def test_each_request_is_logged_once_with_its_fields(
    client: httpx.AsyncClient, log_lines: Callable[[], list[dict[str, object]]]
) -> None:
    user = await register(client)
    device = await login(client, user["email"])
    await device.client.get("/api/v1/users/me", headers={"X-Request-ID": "trace-me-1"})
    await client.get("/no/such/route", headers={"X-Request-ID": "trace-404"})
    lines = request_lines(log_lines())
    me = [line for line in lines if line["request_id"] == "trace-me-1"]
    assert len(me) == 1
    assert me[0]["method"] == "GET"
    assert me[0]["path"] == "/api/v1/users/me"
    assert me[0]["status"] == 200
    assert me[0]["user_id"] == user["id"]
    assert isinstance(me[0]["duration_ms"], float)
    assert me[0]["duration_ms"] > 0  # timed from before authentication
    missing = [line for line in lines if line["request_id"] == "trace-404"]
    assert len(missing) == 1
    assert missing[0]["status"] == 404
    assert missing[0]["user_id"] is None


async def test_no_password_token_cookie_or_hash_reaches_the_logs(
    client: httpx.AsyncClient,
    log_lines: Callable[[], list[dict[str, object]]],
    conn: asyncpg.Connection,
) -> None:
    secret_password = "Sup3r-Secret-Pa55word-xyz"
    user = await register(client, password=secret_password)
    device = await login(client, user["email"], password=secret_password)
    refreshed = await refresh_with(client, device.refresh_token)
    new_refresh = refreshed.cookies.get("refresh_token") or ""
    # Failures, on purpose: wrong password, bad JSON carrying a password, forged tokens.
    await client.post(
        "/api/v1/auth/login", json={"login": user["email"], "password": "wrong-" + secret_password}
    )
    await client.post(
        "/api/v1/auth/login",
        content=b'{"login": "x", "password": "' + secret_password.encode() + b'"',
        headers={"Content-Type": "application/json"},
    )
    await client.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {device.access_token}x"}
    )
    await refresh_with(client, device.refresh_token)  # reuse: revokes, logs a warning or two
    await client.put(
        "/api/v1/users/me/password",
        json={"current_password": secret_password, "new_password": "short"},
        headers=device.headers,
    )
    stored_hash = await conn.fetchval(
        "SELECT password_hash FROM app_user WHERE email = $1", user["email"]
    )
    output = json.dumps(log_lines())
    assert output  # something was logged, so the check below means something
    for secret in (
        secret_password,
        device.access_token,
        device.access_token.split(".")[2],  # the signature alone
        device.refresh_token,
        device.refresh_token.split(".")[2],
        new_refresh,
        stored_hash,
    ):
        assert secret
        assert secret not in output


def test_json_lines_carry_extra_fields_and_exceptions() -> None:
    record = logging.makeLogRecord(
        {"name": "x", "levelname": "ERROR", "msg": "boom %s", "args": (1,), "extra_field": 7}
    )
    try:
        raise ValueError("inner")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "boom 1"
    assert line["level"] == "error"
    assert line["extra_field"] == 7
    assert "ValueError: inner" in line["exception"]
    console = ConsoleFormatter().format(record)
    assert "boom 1" in console
    assert "extra_field=7" in console
