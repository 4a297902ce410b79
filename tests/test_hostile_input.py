"""A corpus of hostile requests: each gets a 4xx problem, never a 5xx, and stores nothing."""

from __future__ import annotations

import asyncpg
import httpx
import pytest
from litestar import Litestar

from tests.support.accounts import Device, new_user, user_with_role
from tests.support.routes import endpoints

pytestmark = pytest.mark.anyio

NUL = "\x00"


def query_parameters(app: Litestar) -> dict[str, list[str]]:
    """path -> query parameters, for every GET route of the API that takes any."""
    found = {
        endpoint.url(): endpoint.parameters("query")
        for endpoint in endpoints(app, under="/api")
        if endpoint.method == "GET" and endpoint.parameters("query")
    }
    assert len(found) >= 5, found
    return found


@pytest.fixture
async def device(client: httpx.AsyncClient) -> Device:
    return await new_user(client)


@pytest.fixture
async def superadmin(client: httpx.AsyncClient, conn: asyncpg.Connection) -> Device:
    """A device every route lets in, the administration's too."""
    return await user_with_role(client, conn, "superadmin")


async def stored(conn: asyncpg.Connection) -> tuple[int, int, int]:
    return (
        await conn.fetchval("SELECT count(*) FROM todo"),
        await conn.fetchval("SELECT count(*) FROM app_user"),
        await conn.fetchval("SELECT max(version) FROM todo") or 0,
    )


def assert_client_error(response: httpx.Response, case: str) -> None:
    assert 400 <= response.status_code < 500, f"{case}: {response.status_code} {response.text}"
    assert response.headers["content-type"] == "application/problem+json", case


async def test_nul_in_every_query_parameter_is_a_400(app: Litestar, superadmin: Device) -> None:
    for path, names in query_parameters(app).items():
        for name in names:
            response = await superadmin.client.get(path, params={name: f"a{NUL}b"})
            assert_client_error(response, f"{path}?{name}")
            assert response.status_code == 400, f"{path}?{name}"


@pytest.mark.parametrize(
    "value", ["0", "-1", "501", "1e3", "99999999999999999999999999999", "", " ", "0x10"]
)
async def test_bad_limits_are_400(app: Litestar, superadmin: Device, value: str) -> None:
    # Lists take 1-100, the sync feed 1-500: each value is outside both.
    lists = [path for path, names in query_parameters(app).items() if "limit" in names]
    assert len(lists) >= 4, lists
    for path in lists:
        response = await superadmin.client.get(path, params={"limit": value})
        assert_client_error(response, path)


async def test_deeply_nested_json_is_a_400_and_stores_nothing(
    device: Device, conn: asyncpg.Connection
) -> None:
    before = await stored(conn)
    nested = "[" * 10_000 + "]" * 10_000
    for body in (nested, '{"title": ' + nested + "}", '{"title": "t", "notes": {"a": ' * 500):
        response = await device.client.post(
            "/api/v1/todos", content=body, headers={"Content-Type": "application/json"}
        )
        assert_client_error(response, body[:20])
    assert await stored(conn) == before


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/xml",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
    ],
)
async def test_unknown_content_types_are_refused(
    device: Device, conn: asyncpg.Connection, content_type: str
) -> None:
    before = await stored(conn)
    response = await device.client.post(
        "/api/v1/todos", content=b"title=hello", headers={"Content-Type": content_type}
    )
    assert_client_error(response, content_type)
    assert await stored(conn) == before


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/todos/../users",
        "/api/v1/todos/..%2F..%2Fusers",
        "/api/v1/todos/%2e%2e/%2e%2e/users/me",
        "/api/v1/todos/00000000-0000-0000-0000-000000000000%00",
        "/api/v1/todos/not-a-uuid",
        "/api/v1/todos/" + "9" * 5000,
        "/api/v1/auth/sessions/' OR '1'='1",
    ],
)
async def test_path_tricks_in_ids_reach_nothing(device: Device, path: str) -> None:
    # `..` is resolved by the client, so the first case asks for /api/v1/users: a 403 for a user.
    response = await device.client.get(path)
    assert_client_error(response, path)
    assert response.status_code in (400, 403, 404, 405)


async def test_method_confusion_is_405_and_overrides_are_ignored(
    device: Device, conn: asyncpg.Connection
) -> None:
    created = await device.client.post("/api/v1/todos", json={"title": "keep me"})
    todo = created.json()
    for method, path in (
        ("PUT", "/api/v1/todos"),
        ("POST", f"/api/v1/todos/{todo['id']}"),
        ("PUT", f"/api/v1/todos/{todo['id']}/complete"),
    ):
        response = await device.client.request(method, path, json={})
        assert_client_error(response, method)
        assert response.status_code == 405
    # A method-override header must not turn a GET into a DELETE.
    response = await device.client.get(
        f"/api/v1/todos/{todo['id']}", headers={"X-HTTP-Method-Override": "DELETE"}
    )
    assert response.status_code == 200
    assert await conn.fetchval("SELECT deleted_at FROM todo") is None


async def test_oversized_headers_are_refused_not_crashed(device: Device) -> None:
    huge = "x" * 64 * 1024
    for headers in (
        {"Authorization": f"Bearer {huge}"},
        {"If-Match": f'"{huge}"'},
        {"Idempotency-Key": huge},
        {"X-Request-ID": huge},
        {"Cookie": f"access_token={huge}"},
    ):
        response = await device.client.patch(
            "/api/v1/todos/00000000-0000-0000-0000-000000000000",
            json={"title": "x"},
            headers=headers,
        )
        assert response.status_code < 500, (list(headers), response.text)


async def test_huge_and_odd_numbers_in_bodies_are_400(
    device: Device, conn: asyncpg.Connection
) -> None:
    before = await stored(conn)
    for body in (
        '{"title": "t", "priority": 1' + "0" * 400 + "}",
        '{"title": "t", "position": 1e999}',
        '{"title": "t", "position": NaN}',
        '{"title": "t", "priority": true}',
        '{"title": "t", "priority": 1.5}',
    ):
        response = await device.client.post(
            "/api/v1/todos", content=body, headers={"Content-Type": "application/json"}
        )
        assert_client_error(response, body)
        assert response.status_code == 400, body
    assert await stored(conn) == before


async def test_cors_with_a_foreign_origin_echoes_no_credentials(
    client_with: object,
) -> None:
    from collections.abc import Callable
    from contextlib import AbstractAsyncContextManager
    from typing import cast

    build = cast(Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]], client_with)
    async with build(ALLOWED_ORIGINS="https://app.example") as client:
        response = await client.options(
            "/api/v1/auth/login",
            headers={
                "Origin": "https://evil.example",
                "Access-Control-Request-Method": "POST",
            },
        )
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-credentials" not in response.headers
