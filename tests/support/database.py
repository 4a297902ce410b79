"""The test settings, throwaway PostgreSQL clusters, and statements run outside the tests' loops."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

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
    "RATE_LIMIT_REVERIFY": "1000/minute",
}


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


@contextmanager
def new_database(admin_url: str, prefix: str, template: str | None = None) -> Iterator[str]:
    """A database of its own on `admin_url`'s server, dropped on exit; its URL. Empty, or a copy
    of the database at the URL `template` (which nobody may be connected to)."""
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    copy = f' TEMPLATE "{urlsplit(template).path[1:]}"' if template else ""
    execute(admin_url, f'CREATE DATABASE "{name}"{copy}')
    try:
        yield with_database(admin_url, name)
    finally:
        execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def embedded_cluster(prefix: str) -> Iterator[EmbeddedPostgres]:
    """A started embedded cluster, deleted on exit.

    Not under pytest's tmp_path: another pytest run resets that tree to mode 0700, which locks
    out the unprivileged user the server runs as when tests run as root."""
    cluster = EmbeddedPostgres(
        Path(tempfile.mkdtemp(prefix=prefix)) / "pg", options=FAST_UNSAFE_OPTIONS
    )
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.delete()
