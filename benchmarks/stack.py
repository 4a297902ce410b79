"""What `just bench` runs against: one throwaway embedded PostgreSQL, seeded in SQL, and the three
servers (ours, the ceiling, the peer) on loopback, each under uvicorn with the same options.

Nothing here goes through the API to seed: users, to-dos and device sessions are written with
`generate_series`, and access/refresh tokens are minted with the app's own `TokenKeys` from the
same SECRET_KEY the servers read, so they are exactly what a login would have returned.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
from argon2 import PasswordHasher

from todo_api.auth.tokens import TokenKeys
from todo_api.core import db
from todo_api.core.config import load_settings
from todo_api.core.pagination import Cursors
from todo_api.ops.embedded import FAST_UNSAFE_OPTIONS, EmbeddedPostgres, free_port

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple"
BIG_USER_EMAIL = "big@bench.example"
# The same for all three servers. Rate limits are raised so they never answer 429 under load
# (the limiter middleware still runs on its routes); access tokens live long enough for a run.
COMMON_ENV = {
    "APP_ENV": "prod",
    "SECRET_KEY": secrets.token_urlsafe(48),
    "ACCESS_TOKEN_EXPIRE_MINUTES": "120",
    "RATE_LIMIT_LOGIN": "1000000/minute",
    "RATE_LIMIT_REGISTER": "1000000/minute",
    "RATE_LIMIT_TOKEN": "1000000/minute",
    "RATE_LIMIT_REFRESH": "1000000/minute",
    "RATE_LIMIT_LOGIN_FAILURES": "1000000/hour",
    "DB_POOL_MIN": "2",
    "DB_POOL_MAX": "10",
    "LOG_LEVEL": "INFO",
    "LOG_FORMAT": "json",
}
# Server options for the benchmark cluster: no durability (a throwaway), enough shared buffers
# to hold the seeded data, room for three pools of 10 plus the driver.
PG_OPTIONS = (*FAST_UNSAFE_OPTIONS, "shared_buffers=512MB", "max_connections=200")
APPS = ("ours", "ceiling", "peer")


@dataclass
class Seeded:
    users: list[uuid.UUID]  # ordinary users, each with `todos_per_user` to-dos
    big_user: uuid.UUID  # the one with `big_todos`
    todos_per_user: int
    big_todos: int
    seconds: float


@dataclass
class Server:
    name: str
    base_url: str
    process: subprocess.Popen[bytes]
    extra: dict[str, str] = field(default_factory=dict)


def settings_env() -> dict[str, str]:
    return {**COMMON_ENV}


def token_keys() -> TokenKeys:
    return TokenKeys(load_settings(COMMON_ENV))


def cursors() -> Cursors:
    return Cursors(load_settings(COMMON_ENV).key_for("cursor"))


def hasher() -> PasswordHasher:
    """argon2id with the app's production parameters (its Settings defaults: t=3, 64 MiB, p=1)."""
    settings = load_settings(COMMON_ENV)
    return PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
    )


def password_hash() -> str:
    """One hash with the production parameters, stored for every seeded user."""
    return hasher().hash(PASSWORD)


async def seed(url: str, users: int, todos_per_user: int, big_todos: int) -> Seeded:
    """`users` users with `todos_per_user` to-dos each, plus one with `big_todos`, in SQL."""
    started = time.perf_counter()
    hashed = password_hash()
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(
            """
            INSERT INTO app_user (id, email, username, display_name, password_hash, role,
                                  is_active, created_at, updated_at, password_changed_at)
            SELECT gen_random_uuid(), 'user' || n || '@bench.example', 'user' || n,
                   'User ' || n, $1, 'user', true, now(), now(), now()
            FROM generate_series(1, $2) AS n
            """,
            hashed,
            users,
        )
        await connection.execute(
            """
            INSERT INTO app_user (id, email, username, display_name, password_hash, role,
                                  is_active, created_at, updated_at, password_changed_at)
            VALUES (gen_random_uuid(), $1, 'big', 'Big', $2, 'user', true, now(), now(), now())
            """,
            BIG_USER_EMAIL,
            hashed,
        )
        # One statement per to-do population; created_at one second apart (so pages are stable),
        # a mix of done/open, priorities and due dates like list_latency.py.
        todo_sql = """
            INSERT INTO todo (id, owner, title, notes, is_completed, completed_at, priority,
                              position, due_at, created_at, updated_at, version, change_xid)
            SELECT gen_random_uuid(), u.id, 'todo ' || n, 'notes for todo ' || n, n % 3 = 0,
                   CASE WHEN n % 3 = 0 THEN now() - n * interval '1 second' END, n % 4, n,
                   CASE WHEN n % 2 = 0 THEN now() + n * interval '1 minute' END,
                   now() - (($2 - n) * interval '1 second') - interval '1 day', now(), 1, 0
            FROM app_user u CROSS JOIN generate_series(1, $2) AS n
            WHERE u.email LIKE $1
            """
        await connection.execute(todo_sql, "user%@bench.example", todos_per_user)
        await connection.execute(todo_sql, BIG_USER_EMAIL, big_todos)
        await connection.execute("VACUUM ANALYZE")
        rows = await connection.fetch(
            "SELECT id FROM app_user WHERE email LIKE 'user%@bench.example' "
            "ORDER BY created_at, email"
        )
        big = await connection.fetchval("SELECT id FROM app_user WHERE email = $1", BIG_USER_EMAIL)
    finally:
        await connection.close()
    return Seeded(
        users=[row["id"] for row in rows],
        big_user=big,
        todos_per_user=todos_per_user,
        big_todos=big_todos,
        seconds=time.perf_counter() - started,
    )


async def new_sessions(
    url: str, owners: list[uuid.UUID], device: str
) -> list[tuple[uuid.UUID, uuid.UUID, str]]:
    """One live device session per entry of `owners`: [(user id, session id, salt)]."""
    keys = token_keys()
    rows = [(uuid.uuid4(), owner, keys.new_salt()) for owner in owners]
    connection = await asyncpg.connect(url)
    try:
        await connection.executemany(
            """
            INSERT INTO device_session (id, "user", device_name, user_agent, ip, created_at,
                                        last_used_at, expires_at, refresh_counter, refresh_salt,
                                        rotated_at)
            VALUES ($1, $2, $3, 'wrk', '127.0.0.1', now(), now(), now() + interval '30 days',
                    0, $4, now() - interval '1 hour')
            """,
            [(sid, owner, device, salt) for sid, owner, salt in rows],
        )
    finally:
        await connection.close()
    return [(owner, sid, salt) for sid, owner, salt in rows]


def start_pg() -> EmbeddedPostgres:
    server = EmbeddedPostgres(
        Path(tempfile.mkdtemp(prefix="todo-api-bench-")) / "pg", options=PG_OPTIONS
    )
    server.start()
    asyncio.run(db.migrate(server.url()))
    return server


def _wait_ready(base_url: str, path: str, process: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(300):
        if process.poll() is not None:
            raise RuntimeError(f"{base_url} exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base_url}{path}", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{base_url} did not become ready: {log.read_text()[-3000:]}")


def start_server(
    name: str, database_url: str, log_dir: Path, workers: int, **overrides: str
) -> Server:
    """ours: `python -m todo_api serve`; ceiling/peer: the same uvicorn options.
    `overrides` go on top of the common environment."""
    port = free_port()
    env = {
        **os.environ,
        **COMMON_ENV,
        "DATABASE_URL": database_url,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "WEB_CONCURRENCY": str(workers),
        **overrides,
    }
    if name == "ours":
        command = [sys.executable, "-m", "todo_api", "serve"]
    else:
        command = [sys.executable, "-m", f"benchmarks.{name}"]
    log = log_dir / f"{name}.log"
    # The request log of ours and the peer's access log go to a file, as a container's would
    # go to a pipe: the cost of writing them is part of what is measured.
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)  # noqa: S603
    base_url = f"http://127.0.0.1:{port}"
    _wait_ready(base_url, "/health", process, log)
    return Server(name, base_url, process)


def stop_server(server: Server) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.process.kill()


@contextmanager
def running(servers: list[Server]) -> Iterator[list[Server]]:
    try:
        yield servers
    finally:
        for server in servers:
            stop_server(server)


@contextmanager
def serving(**overrides: str) -> Iterator[tuple[str, str]]:
    """Ours alone on a throwaway migrated cluster, for the narrower benchmarks (`just bench-auth`,
    `just bench-list`): (base URL of the app, database URL); `overrides` its environment."""
    pg = start_pg()
    log_dir = Path(tempfile.mkdtemp(prefix="todo-api-bench-logs-"))
    try:
        with running([start_server("ours", pg.url(), log_dir, 1, **overrides)]) as [server]:
            yield server.base_url, pg.url()
    finally:
        pg.delete()
        shutil.rmtree(log_dir, ignore_errors=True)
