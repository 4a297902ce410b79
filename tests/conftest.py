"""A real PostgreSQL for every test: TEST_DATABASE_URL's server, else a throwaway embedded cluster.

Each test gets its own database cloned from a migrated template, so tests pass alone, in any order
and in parallel (the template's name carries the process id), and real commits are visible to
concurrent connections. The helpers tests share are in tests/support/; the fixtures are here.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest
from litestar import Litestar

from tests.support.asgi import app_client
from tests.support.database import TEST_ENV, embedded_cluster, new_database
from tests.support.serving import ServeProcess, StartServer, app_env
from todo_api.app import create_app
from todo_api.core import db
from todo_api.core.config import Settings, load_settings
from todo_api.ops.embedded import EmbeddedPostgres


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """A URL on a server where the tests may create and drop databases."""
    if url := os.environ.get("TEST_DATABASE_URL"):
        yield url
        return
    with embedded_cluster("todo-api-tests-") as cluster:
        yield cluster.url()


@pytest.fixture(scope="session")
def template_database(pg_admin_url: str) -> Iterator[str]:
    """A migrated database that each test's database is cloned from; its URL."""
    with new_database(pg_admin_url, f"todo_tmpl_{os.getpid()}") as url:
        asyncio.run(db.migrate(url))
        yield url


@pytest.fixture
def own_cluster() -> Iterator[EmbeddedPostgres]:
    """A migrated cluster of this test's own, so stopping it disturbs no other test."""
    with embedded_cluster("todo-api-own-") as cluster:
        asyncio.run(db.migrate(cluster.url()))
        yield cluster


@pytest.fixture
def database_url(pg_admin_url: str, template_database: str) -> Iterator[str]:
    with new_database(pg_admin_url, "todo_test", template=template_database) as url:
        yield url


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
    async with app_client(app) as c:
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
        async with app_client(create_app(load_settings({**settings_env, **overrides}))) as c:
            yield c

    return build


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """`start_server(database_url, **env)` starts `serve` (1 worker) on that database; every
    server started is stopped (SIGCONT, SIGTERM, then SIGKILL) when the test ends."""
    started: list[ServeProcess] = []

    def start(database_url: str, **overrides: str) -> ServeProcess:
        server = ServeProcess(
            app_env(database_url, **overrides), tmp_path / f"serve-{len(started)}.log"
        )
        started.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop(grace=5)  # a test that checks the shutdown has done so already
            # Shown by pytest when the test fails.
            print(f"--- {server.log_path.name} ---\n{server.log_tail(4000)}")


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A separate connection to the test's database, for asserting what is really stored."""
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()
