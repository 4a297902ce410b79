"""A real PostgreSQL for every test: TEST_DATABASE_URL's server, else a throwaway embedded cluster.

Each test gets its own database cloned from a migrated template, so tests pass alone, in any order
and in parallel (the template's name carries the process id), and real commits are visible to
concurrent connections.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from litestar import Litestar

from todo_api.core import db
from todo_api.app import create_app
from todo_api.core.config import Settings, load_settings
from todo_api.ops.embedded import FAST_UNSAFE_OPTIONS, EmbeddedPostgres

TEST_SECRET_KEY = "test-secret-key-that-is-long-enough-for-hs256-0123456789"
TEST_ENV = {
    "APP_ENV": "test",
    "SECRET_KEY": TEST_SECRET_KEY,
    "DB_POOL_MIN": "1",
    "DB_POOL_MAX": "10",
    # Cheap argon2 (production parameters cost ~100-300 ms a hash); the same code paths.
    "ARGON2_TIME_COST": "1",
    "ARGON2_MEMORY_KIB": "1024",
    # Tests that exercise rate limits set their own; the rest must not trip them.
    "RATE_LIMIT_LOGIN": "1000/minute",
    "RATE_LIMIT_REGISTER": "1000/minute",
    "RATE_LIMIT_TOKEN": "1000/minute",
    "RATE_LIMIT_REFRESH": "1000/minute",
}


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def with_database(url: str, name: str) -> str:
    """`url` with its database replaced by `name`."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def execute(url: str, *statements: str) -> None:
    """Run statements on a short-lived connection (outside any test's event loop)."""

    async def run() -> None:
        connection = await asyncpg.connect(url)
        try:
            for statement in statements:
                await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """A URL on a server where the tests may create and drop databases."""
    if url := os.environ.get("TEST_DATABASE_URL"):
        yield url
        return
    server = EmbeddedPostgres(
        Path(tempfile.mkdtemp(prefix="todo-api-tests-")) / "pg", options=FAST_UNSAFE_OPTIONS
    )
    server.start()
    try:
        yield server.url()
    finally:
        server.delete()


@pytest.fixture(scope="session")
def template_database(pg_admin_url: str) -> Iterator[str]:
    """A migrated database that each test's database is cloned from."""
    name = f"todo_tmpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    execute(pg_admin_url, f'CREATE DATABASE "{name}"')
    asyncio.run(db.migrate(with_database(pg_admin_url, name)))
    try:
        yield name
    finally:
        execute(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(pg_admin_url: str, template_database: str) -> Iterator[str]:
    name = f"todo_test_{uuid.uuid4().hex[:16]}"
    execute(pg_admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    try:
        yield with_database(pg_admin_url, name)
    finally:
        execute(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def settings_env(database_url: str) -> dict[str, str]:
    """The environment a test's app is configured from; tests may add to it before `app` is built."""
    return {**TEST_ENV, "DATABASE_URL": database_url}


@pytest.fixture
def settings(settings_env: dict[str, str]) -> Settings:
    return load_settings(settings_env)


@pytest.fixture
def app(settings: Settings) -> Litestar:
    return create_app(settings)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """The real app over HTTP, its lifespan (and so its database pool) running."""
    async with (
        app.lifespan(),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as c,
    ):
        yield c


@pytest.fixture
def client_with(
    settings_env: dict[str, str],
) -> Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]:
    """Build a client on an app configured with extra variables: `async with client_with(X="1")`.

    Piccolo's engine is one per process, so use this instead of (not beside) `client`.
    """

    @asynccontextmanager
    async def build(**overrides: str) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(load_settings({**settings_env, **overrides}))
        transport = httpx.ASGITransport(app=app)
        async with (
            app.lifespan(),
            httpx.AsyncClient(transport=transport, base_url="http://testserver") as c,
        ):
            yield c

    return build


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A separate connection to the test's database, for asserting what is really stored."""
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()
