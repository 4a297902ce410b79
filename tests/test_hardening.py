"""CORS allowlist, security headers, request and statement timeouts, body size limit."""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import asyncpg
import httpx
import pytest

from tests.support.accounts import new_user
from tests.support.problems import assert_problem
from todo_api.core import db

pytestmark = pytest.mark.anyio

ClientFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]
SPA = "https://app.example"


async def test_cors_preflight_allows_only_listed_origins_with_credentials(
    client_with: ClientFactory,
) -> None:
    async with client_with(ALLOWED_ORIGINS=SPA) as client:
        allowed = await client.options(
            "/api/v1/todos",
            headers={
                "Origin": SPA,
                "Access-Control-Request-Method": "PATCH",
                "Access-Control-Request-Headers": "if-match, content-type",
            },
        )
        assert allowed.status_code in (200, 204)
        assert allowed.headers["access-control-allow-origin"] == SPA
        assert allowed.headers["access-control-allow-credentials"] == "true"
        simple = await client.get("/health", headers={"Origin": SPA})
        assert simple.headers["access-control-allow-origin"] == SPA
        assert "ETag" in simple.headers["access-control-expose-headers"]
        foreign = await client.get("/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in foreign.headers


async def test_without_allowed_origins_there_is_no_cors_at_all(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"Origin": "https://anyone.example"})
    assert "access-control-allow-origin" not in response.headers


async def test_api_responses_carry_security_headers(client: httpx.AsyncClient) -> None:
    for response in (await client.get("/health"), await client.get("/nope")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-frame-options"] == "DENY"
        assert "default-src 'none'" in response.headers["content-security-policy"]
        assert "strict-transport-security" not in response.headers  # not outside prod


@pytest.mark.parametrize("path", ["/docs", "/docs/redoc"])
async def test_docs_get_a_csp_that_allows_every_script_and_style_they_load(
    client: httpx.AsyncClient, path: str
) -> None:
    page = await client.get(path)
    policy = dict(
        (part.split()[0], part.split()[1:])
        for part in page.headers["content-security-policy"].split("; ")
    )
    scripts = re.findall(r'<script src="(https://[^/"]+)', page.text)
    styles = re.findall(r'<link[^>]+href="(https://[^/"]+)', page.text)
    assert scripts, "the page loads its viewer from somewhere"
    for origin in scripts:
        assert origin in policy["script-src"], origin
    for origin in styles:
        assert origin in policy["style-src"], origin
    assert "'unsafe-inline'" in policy["script-src"]  # the inline start-up script


async def test_hsts_is_sent_in_prod(client_with: ClientFactory) -> None:
    async with client_with(
        APP_ENV="prod",
        LOG_FORMAT="json",
        COOKIE_SECURE="true",
        ARGON2_TIME_COST="2",
        ARGON2_MEMORY_KIB="19456",
    ) as client:
        response = await client.get("/health")
    assert response.headers["strict-transport-security"].startswith("max-age=")


async def test_a_request_over_the_time_limit_is_a_503_problem(client_with: ClientFactory) -> None:
    async with client_with(REQUEST_TIMEOUT_SECONDS="0.000001") as client:
        response = await client.post(
            "/api/v1/auth/register", json={"email": "slow@example.com", "password": "x" * 12}
        )
    assert_problem(response, 503)
    assert response.headers["retry-after"] == "1"


async def test_a_slow_statement_is_cancelled_by_the_database(client_with: ClientFactory) -> None:
    async with client_with(DB_STATEMENT_TIMEOUT_MS="200"):
        with pytest.raises(asyncpg.exceptions.QueryCanceledError):
            await db.get_engine().run_ddl("SELECT pg_sleep(2)")


async def test_a_body_over_the_limit_is_413_before_parsing(client: httpx.AsyncClient) -> None:
    device = await new_user(client)
    response = await device.client.post(
        "/api/v1/todos",
        content=b'{"title": "' + b"x" * (1024 * 1024) + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert_problem(response, 413)


async def test_the_admin_gets_its_own_csp_by_its_full_path(client: httpx.AsyncClient) -> None:
    page = await client.get("/admin/")
    assert page.status_code == 200
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert page.headers["x-frame-options"] == "DENY"
