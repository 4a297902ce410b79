"""Liveness, readiness (against a database that is really stopped), OpenAPI docs, request ids."""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import pytest

from tests.support.asgi import app_client
from tests.support.database import TEST_ENV
from todo_api.app import create_app
from todo_api.core.config import load_settings
from todo_api.ops.embedded import EmbeddedPostgres

pytestmark = pytest.mark.anyio


async def test_health_says_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": None}


async def test_ready_checks_the_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


async def test_ready_is_503_while_the_database_is_stopped_and_recovers(
    own_cluster: EmbeddedPostgres,
) -> None:
    app = create_app(load_settings({**TEST_ENV, "DATABASE_URL": own_cluster.url()}))
    async with app_client(app) as client:
        assert (await client.get("/ready")).status_code == 200

        await asyncio.to_thread(own_cluster.stop)
        started = time.monotonic()
        down = await client.get("/ready")
        assert time.monotonic() - started < 2.5
        assert down.status_code == 503
        assert down.headers["content-type"] == "application/problem+json"
        assert down.headers["retry-after"].isdigit()
        assert down.json()["status"] == 503
        assert down.json()["title"] == "Service Unavailable"
        # The process itself is fine: liveness must not flap with the database.
        assert (await client.get("/health")).status_code == 200

        await asyncio.to_thread(own_cluster.start)
        statuses = [(await client.get("/ready")).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]


async def test_openapi_document_and_viewers_are_served(client: httpx.AsyncClient) -> None:
    schema = await client.get("/docs/openapi.json")
    assert schema.status_code == 200
    document = schema.json()
    assert document["openapi"].startswith("3.1")
    assert document["paths"]["/health"]["get"]["operationId"] == "Health"
    for path in ("/docs", "/docs/redoc"):
        page = await client.get(path)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")


async def test_every_operation_has_an_operation_id(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/docs/openapi.json")).json()["paths"]
    missing = [
        f"{method.upper()} {path}"
        for path, operations in paths.items()
        for method, operation in operations.items()
        if not operation.get("operationId", "").isidentifier()
    ]
    assert missing == []


async def test_request_id_is_generated_when_absent(client: httpx.AsyncClient) -> None:
    first = (await client.get("/health")).headers["x-request-id"]
    second = (await client.get("/health")).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert first != second


async def test_request_id_is_propagated_when_well_formed(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"X-Request-ID": "edge-42.abc"})
    assert response.headers["x-request-id"] == "edge-42.abc"


@pytest.mark.parametrize("bad", [b"x" * 200, b"has space", b"semi;colon", "ünïcode".encode()])
async def test_malformed_request_id_is_replaced_not_echoed(
    client: httpx.AsyncClient, bad: bytes
) -> None:
    response = await client.get("/health", headers={b"X-Request-ID": bad})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


async def test_request_id_is_set_on_router_errors_too(client: httpx.AsyncClient) -> None:
    response = await client.get("/no/such/path", headers={"X-Request-ID": "trace-1"})
    assert response.status_code == 404
    assert response.headers["x-request-id"] == "trace-1"
