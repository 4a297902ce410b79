"""Every route in the app's own route table needs an access token, but for the known public ones:
a route added tomorrow is covered by these tests the day it is added."""

from __future__ import annotations

import asyncpg
import httpx
import pytest
from litestar import Litestar

from tests.support.accounts import fresh_jar, new_user
from tests.support.routes import Endpoint, endpoints
from tests.support.todos import create_todo

pytestmark = pytest.mark.anyio

# Answered without an access token (what each does is tested in its own module).
PUBLIC = {
    "GET /health",
    "GET /ready",
    "POST /api/v1/auth/register",
    "POST /api/v1/auth/login",
    "POST /api/v1/auth/token",
    "POST /api/v1/auth/refresh",
}
# The OpenAPI document and the pages that show it are public too.
DOCS = "/docs"


def protected(app: Litestar) -> list[Endpoint]:
    docs = endpoints(app, under=DOCS)
    return [
        endpoint
        for endpoint in endpoints(app)
        if str(endpoint) not in PUBLIC and endpoint not in docs
    ]


async def stored(conn: asyncpg.Connection) -> list[list[asyncpg.Record]]:
    return [
        await conn.fetch(f"SELECT * FROM {table} ORDER BY id")
        for table in ("app_user", "device_session", "todo")
    ]


def test_only_the_known_routes_opt_out_of_authentication(app: Litestar) -> None:
    routes = {str(endpoint) for endpoint in endpoints(app)}
    assert routes >= PUBLIC, "PUBLIC names a route the app no longer has"
    opted_out = {str(endpoint) for endpoint in endpoints(app) if endpoint.public}
    assert opted_out <= PUBLIC, "a route opts out of authentication: is it meant to be public?"
    assert len(protected(app)) >= 20


@pytest.mark.parametrize("credentials", ["none", "garbage-bearer"])
async def test_every_route_but_the_public_ones_requires_authentication(
    app: Litestar, client: httpx.AsyncClient, conn: asyncpg.Connection, credentials: str
) -> None:
    user = await new_user(client)
    todo = await create_todo(user)
    # A real value for each path parameter, so that only the missing token stands in the way.
    values = {"todo_id": todo["id"], "session_id": user.session_id, "user_id": user.user_id}
    before = await stored(conn)
    headers = {"Authorization": "Bearer not.a.token"} if credentials != "none" else {}
    async with fresh_jar(client) as bare:
        for endpoint in protected(app):
            # Any body will do: the token is checked before the body is read.
            body = {} if endpoint.takes_body else None
            response = await bare.request(
                endpoint.method, endpoint.url(**values), json=body, headers=headers
            )
            assert response.status_code == 401, (str(endpoint), response.text)
            assert response.headers["content-type"] == "application/problem+json", endpoint
            assert response.headers["www-authenticate"].startswith("Bearer"), endpoint
    assert await stored(conn) == before
