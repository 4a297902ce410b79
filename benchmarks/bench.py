"""`just bench`: ours vs the ceiling vs the typical peer, same database, same machine, same run.

    uv run just bench                    # full run (~10 minutes on 2 cores)
    uv run just bench --quick            # under 2 minutes, smaller seed, one round
    uv run just bench --wait-quiet 600   # first wait for other processes to leave the CPU
    uv run just bench --quick --only list,create   # some scenarios, print JSON, no report
    uv run --group bench --with py-spy python -m benchmarks.bench --quick --profile
                                         # py-spy of ours under list load -> results/profile.txt

Starts a throwaway embedded PostgreSQL, seeds it in SQL (users x to-dos, plus one user with
100,000), starts three servers on loopback with the same uvicorn options and one worker each
(ours: `python -m todo_api serve`; benchmarks/ceiling.py; benchmarks/peer.py), checks that
they answer the same requests with equivalent bodies, then drives each scenario with wrk
(benchmarks/wrk.lua rotates real bearer tokens across users) in interleaved rounds
(ours, ceiling, peer, ours, ...) after a warm-up, and takes medians. Fixed-rate latency and the
login storm use the asyncio generator in benchmarks/loadgen.py. Writes
benchmarks/results/latest.{json,md,png}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

from benchmarks import stack
from benchmarks.loadgen import Client, fixed_rate, percentile

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
LUA = HERE / "wrk.lua"
APPS = stack.APPS
REFRESH_COOKIE = "__Secure-refresh_token"  # APP_ENV=prod
CREATE_BODY = '{"title":"bench todo","notes":"from wrk","priority":1}'


@dataclass(frozen=True)
class Config:
    users: int
    todos_per_user: int
    big_todos: int
    duration: int  # seconds per measured wrk run (wrk takes whole seconds)
    warmup: int  # seconds per app per scenario, not recorded
    rounds: int
    connections: int
    mixed_connections: int
    fixed_seconds: float
    storm_seconds: float
    storm_rounds: int
    workers: int
    login_seconds: int  # logins complete ~8-17/s here: a run needs a few seconds to count
    login_connections: int


FULL = Config(
    users=1000,
    todos_per_user=1000,
    big_todos=100_000,
    duration=4,
    warmup=2,
    rounds=3,
    connections=32,
    mixed_connections=100,
    fixed_seconds=8.0,
    storm_seconds=6.0,
    storm_rounds=4,
    workers=1,
    login_seconds=5,
    login_connections=8,
)
QUICK = Config(
    users=200,
    todos_per_user=200,
    big_todos=20_000,
    duration=1,
    warmup=1,
    rounds=1,
    connections=32,
    mixed_connections=100,
    fixed_seconds=3.0,
    storm_seconds=3.0,
    storm_rounds=1,
    workers=1,
    login_seconds=2,
    login_connections=8,
)


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    mode: str  # wrk.lua mode
    connections: int  # 0: Config.connections, -1: mixed_connections, -2: login_connections
    apps: tuple[str, ...] = APPS


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- resource sampling ------------------------------------------------------------------------
def process_tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_by_pid(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of `pid` and each of its descendants."""
    seconds = {}
    for process in process_tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            times = process.cpu_times()
            seconds[process.pid] = times.user + times.system
    return seconds


def cpu_seconds(pid: int) -> float:
    return sum(cpu_by_pid(pid).values())


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU used between two snapshots by the processes alive at the end (PostgreSQL backends
    come and go as pools open and close connections; a gone one's last share is lost)."""
    return sum(value - before.get(pid, 0.0) for pid, value in after.items())


def worker_rss_mb(pid: int) -> float:
    """The largest resident set among the server's processes (= per worker)."""
    sizes = [0]
    for process in process_tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            sizes.append(process.memory_info().rss)
    return max(sizes) / 2**20


@contextlib.contextmanager
def sampling_rss(pid: int) -> Iterator[list[float]]:
    peak = [worker_rss_mb(pid)]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            peak[0] = max(peak[0], worker_rss_mb(pid))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()
        peak[0] = max(peak[0], worker_rss_mb(pid))


# --- the data each scenario drives ----------------------------------------------------------------
class World:
    """The seeded database, its tokens, and the wrk data files."""

    def __init__(self, config: Config, database_url: str, postmaster_pid: int, work: Path):
        self.config = config
        self.url = database_url
        self.postmaster_pid = postmaster_pid
        self.work = work
        self.keys = stack.token_keys()
        self.cursors = stack.cursors()
        self.seeded: stack.Seeded | None = None
        self.tokens: dict[uuid.UUID, str] = {}  # user -> access token (one device each)
        self.big_tokens: list[str] = []
        self.deep: dict[str, dict[uuid.UUID, str]] = {}  # app -> user -> cursor
        self.big_deep: dict[str, str] = {}
        self.update_sets: dict[str, list[tuple[uuid.UUID, uuid.UUID]]] = {}  # app -> (todo, owner)

    async def prepare(self) -> None:
        c = self.config
        self.seeded = await stack.seed(self.url, c.users, c.todos_per_user, c.big_todos)
        users = self.seeded.users
        for owner, sid, _ in await stack.new_sessions(self.url, users, "bench device"):
            self.tokens[owner] = self.keys.issue_access(owner, sid)
        big = [self.seeded.big_user] * 64  # one user, many devices
        for owner, sid, _ in await stack.new_sessions(self.url, big, "bench big device"):
            self.big_tokens.append(self.keys.issue_access(owner, sid))
        connection = await asyncpg.connect(self.url)
        try:
            middle = c.todos_per_user // 2
            rows = await connection.fetch(
                """
                SELECT owner, created_at, created_at::text AS key, id FROM (
                    SELECT "owner", created_at, id,
                           row_number() OVER (PARTITION BY "owner" ORDER BY created_at, id) AS n
                    FROM todo WHERE deleted_at IS NULL AND "owner" = ANY($1::uuid[])) ranked
                WHERE n = $2
                """,
                [*users, self.seeded.big_user],
                middle,
            )
            big_row = await connection.fetchrow(
                """
                SELECT "owner", created_at, created_at::text AS key, id FROM todo
                WHERE "owner" = $1 AND deleted_at IS NULL ORDER BY created_at, id
                OFFSET $2 LIMIT 1
                """,
                self.seeded.big_user,
                c.big_todos // 2 - 1,
            )
            # Update targets: a disjoint set of to-dos per app, one per user.
            for index, app in enumerate(APPS):
                picked = await connection.fetch(
                    """
                    SELECT id, "owner" FROM (
                        SELECT id, "owner", row_number() OVER (
                            PARTITION BY "owner" ORDER BY created_at DESC, id) AS n
                        FROM todo WHERE "owner" = ANY($1::uuid[])) ranked
                    WHERE n = $2
                    """,
                    users,
                    10 + index,
                )
                self.update_sets[app] = [(row["id"], row["owner"]) for row in picked]
        finally:
            await connection.close()
        for app in APPS:
            self.deep[app] = {
                row["owner"]: self.list_cursor(app, row["owner"], row) for row in rows
            }
            self.big_deep[app] = self.list_cursor(app, self.seeded.big_user, big_row)

    def list_cursor(self, app: str, owner: uuid.UUID, row: Any) -> str:
        """The cursor each app gives for "after this row" in the default list."""
        if app == "peer":  # the peer's own (idiomatic) cursor: isoformat of the datetime
            scope, key = f"todos:{owner}:created_at", row["created_at"].isoformat()
        else:  # ours (todo_api/todos/queries.py) and the ceiling: PostgreSQL's text
            scope, key = f"todos:{owner}:created_at:None:None:None:None", row["key"]
        return self.cursors.encode(scope, [key, str(row["id"])])

    async def sync_tokens(self, changed_per_user: int = 3) -> dict[uuid.UUID, str]:
        """A fresh sync token per user, then `changed_per_user` changes after it."""
        assert self.seeded is not None
        connection = await asyncpg.connect(self.url)
        try:
            xid = await connection.fetchval(
                "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
            )
            await connection.execute(
                """
                UPDATE todo SET title = title || '.', version = version + 1, updated_at = now()
                WHERE id IN (SELECT id FROM (
                    SELECT id, row_number() OVER (PARTITION BY "owner" ORDER BY created_at, id) n
                    FROM todo WHERE "owner" = ANY($1::uuid[]) AND deleted_at IS NULL) r
                    WHERE n <= $2)
                """,
                self.seeded.users,
                changed_per_user,
            )
        finally:
            await connection.close()
        return {user: self.cursors.encode(f"sync:{user}", [xid]) for user in self.seeded.users}

    async def update_rows(self, app: str) -> list[str]:
        connection = await asyncpg.connect(self.url)
        try:
            ids = [todo for todo, _ in self.update_sets[app]]
            versions = {
                row["id"]: row["version"]
                for row in await connection.fetch(
                    "SELECT id, version FROM todo WHERE id = ANY($1::uuid[])", ids
                )
            }
        finally:
            await connection.close()
        return [
            f"{todo}\t{self.tokens[owner]}\t{versions[todo]}"
            for todo, owner in self.update_sets[app]
        ]

    async def refresh_rows(self, count: int = 256) -> list[str]:
        assert self.seeded is not None
        owners = [self.seeded.users[i % len(self.seeded.users)] for i in range(count)]
        sessions = await stack.new_sessions(self.url, owners, "bench refresh")
        return [self.keys.refresh_token(sid, 0, salt) for _, sid, salt in sessions]

    def login_rows(self) -> list[str]:
        assert self.seeded is not None
        return [
            json.dumps({"login": f"user{n}@bench.example", "password": stack.PASSWORD})
            for n in range(1, min(len(self.seeded.users), 200) + 1)
        ]

    def list_rows(self) -> list[str]:
        return [f"/api/v1/todos\t{token}" for token in self.tokens.values()]

    async def files(self, scenario: str, app: str, sync: dict[uuid.UUID, str]) -> Path:
        """Write the data files wrk.lua reads for one run of `scenario` against `app`."""
        directory = self.work / scenario / app
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        files: dict[str, list[str]] = {}
        if scenario == "list":
            files["get"] = self.list_rows()
        elif scenario == "deep":
            files["get"] = [
                f"/api/v1/todos?cursor={self.deep[app][user]}\t{token}"
                for user, token in self.tokens.items()
            ]
        elif scenario == "big":
            files["get"] = [f"/api/v1/todos\t{token}" for token in self.big_tokens]
        elif scenario == "big_deep":
            files["get"] = [
                f"/api/v1/todos?cursor={self.big_deep[app]}\t{token}" for token in self.big_tokens
            ]
        elif scenario == "sync":
            files["get"] = [
                f"/api/v1/todos/changes?since={sync[user]}\t{token}"
                for user, token in self.tokens.items()
            ]
        elif scenario == "create":
            files["post"] = [
                f"/api/v1/todos\t{token}\t{CREATE_BODY}" for token in self.tokens.values()
            ]
        elif scenario == "update":
            files["update"] = await self.update_rows(app)
        elif scenario == "refresh":
            files["refresh"] = await self.refresh_rows()
        elif scenario in ("login", "login_storm"):
            files["login"] = self.login_rows()
        elif scenario == "mixed":
            files["get"] = self.list_rows()
            files["post"] = [
                f"/api/v1/todos\t{token}\t{CREATE_BODY}" for token in self.tokens.values()
            ]
            files["update"] = await self.update_rows(app)
            files["refresh"] = await self.refresh_rows()
            files["login"] = self.login_rows()
        for name, rows in files.items():
            (directory / f"{name}.tsv").write_text("\n".join(rows) + "\n")
        return directory


# --- running wrk ------------------------------------------------------------------------------
def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        log("wrk is missing: installing Debian's package (apt-get install -y wrk)")
        subprocess.run(["apt-get", "update", "-qq"], check=False)  # noqa: S607
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)  # noqa: S607
        found = shutil.which("wrk")
        if found:
            return found
    sys.exit(
        "error: `wrk` is needed (HTTP load generator). Install it, e.g. `sudo apt-get install "
        "wrk` on Debian/Ubuntu or `brew install wrk` on macOS, then run `just bench` again."
    )


def wrk_command(wrk: str, base_url: str, mode: str, files: Path, seconds: int, c: int) -> list[str]:
    return [
        wrk,
        "-t1",
        f"-c{c}",
        f"-d{int(seconds)}s",
        "--timeout",
        "30s",
        "-s",
        str(LUA),
        base_url,
        "--",
        mode,
        str(files),
        REFRESH_COOKIE,
        "1",
    ]


def warm_up(
    wrk: str,
    servers: list[stack.Server],
    world: World,
    scenario: Scenario,
    c: int,
    sync: dict[uuid.UUID, str],
) -> None:
    """All servers at once (nothing is recorded): compiles the statements, fills the caches."""
    processes = []
    for server in servers:
        files = asyncio.run(world.files(scenario.name, server.name, sync))
        command = wrk_command(wrk, server.base_url, scenario.mode, files, world.config.warmup, c)
        processes.append(
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
        )
    for process in processes:
        process.wait()
    for server in servers:
        settle(server.process.pid)


def settle(pid: int, limit: float = 20.0) -> None:
    """Wait until the server has worked off what wrk left queued (e.g. logins waiting for a
    hash), so it does not spill into the next run."""
    deadline = time.monotonic() + limit
    last = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = cpu_seconds(pid)
        if now - last < 0.02:
            return
        last = now


@dataclass
class Run:
    app: str
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int
    requests: int
    cpu_us: float  # server CPU per request
    db_cpu_us: float  # PostgreSQL CPU per request
    rss_mb: float
    fallbacks: int
    foreign_cores: float  # CPU used meanwhile by processes that are not part of the benchmark


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores)."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def children_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def self_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_wrk(
    wrk: str, server: stack.Server, world: World, mode: str, files: Path, seconds: int, c: int
) -> Run:
    pid = server.process.pid
    cpu0, db0 = cpu_by_pid(pid), cpu_by_pid(world.postmaster_pid)
    machine0, children0, self0 = busy_seconds(), children_seconds(), self_seconds()
    with sampling_rss(pid) as peak:
        result = subprocess.run(  # noqa: S603
            wrk_command(wrk, server.base_url, mode, files, seconds, c),
            capture_output=True,
            text=True,
            check=False,
            cwd=HERE,
        )
    cpu1, db1 = cpu_by_pid(pid), cpu_by_pid(world.postmaster_pid)
    machine1, children1, self1 = busy_seconds(), children_seconds(), self_seconds()
    ours = (
        cpu_delta(cpu0, cpu1)
        + cpu_delta(db0, db1)
        + (children1 - children0)  # wrk
        + (self1 - self0)
    )
    foreign = max(machine1 - machine0 - ours, 0.0) / seconds
    settle(pid)
    line = next(
        (x for x in reversed(result.stdout.splitlines()) if x.startswith('{"requests"')), None
    )
    if line is None:
        raise RuntimeError(f"wrk failed: {result.stdout}\n{result.stderr}")
    data = json.loads(line)
    requests = max(data["requests"], 1)
    # A fallback means a queue ran dry (requests failed and lost their version/cookie).
    errors = sum(data[k] for k in ("connect", "read", "write", "status", "timeout", "fallbacks"))
    return Run(
        app=server.name,
        rps=data["requests"] / (data["duration_us"] / 1e6),
        p50_ms=data["p50_us"] / 1000,
        p95_ms=data["p95_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        errors=errors,
        requests=data["requests"],
        cpu_us=cpu_delta(cpu0, cpu1) / requests * 1e6,
        db_cpu_us=cpu_delta(db0, db1) / requests * 1e6,
        rss_mb=peak[0],
        fallbacks=data["fallbacks"],
        foreign_cores=foreign,
    )


def median_run(runs: list[Run]) -> dict[str, Any]:
    def med(attr: str) -> float:
        return float(statistics.median(getattr(run, attr) for run in runs))

    return {
        "rps": med("rps"),
        "p50_ms": med("p50_ms"),
        "p95_ms": med("p95_ms"),
        "p99_ms": med("p99_ms"),
        "cpu_us": med("cpu_us"),
        "db_cpu_us": med("db_cpu_us"),
        "rss_mb": max(run.rss_mb for run in runs),
        "errors": sum(run.errors for run in runs),
        "requests": sum(run.requests for run in runs),
        "fallbacks": sum(run.fallbacks for run in runs),
        "foreign_cores": med("foreign_cores"),
        "rounds": [round(run.rps, 1) for run in runs],
    }


# --- equivalence -------------------------------------------------------------------------------
def normal(value: Any) -> Any:
    """JSON with datetimes compared as instants and UUIDs as lower-case strings."""
    if isinstance(value, dict):
        return {k: normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normal(v) for v in value]
    if isinstance(value, str) and len(value) >= 20 and value[4:5] == "-" and value[10:11] == "T":
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(value).astimezone(UTC).isoformat()
    return value


def strip(value: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in value.items() if k not in keys}


class Mismatch(AssertionError):
    pass


def same(what: str, answers: dict[str, Any]) -> None:
    first = next(iter(answers.values()))
    for app, answer in answers.items():
        if answer != first:
            raise Mismatch(f"{what}: {app} differs\n  {app}: {answer!r}\n  first: {first!r}")


def check_equivalence(servers: dict[str, stack.Server], world: World) -> list[str]:
    """Send each scenario's request to every server and compare; raise Mismatch if any differ."""
    assert world.seeded is not None
    checked: list[str] = []
    user = world.seeded.users[0]
    bearer = {"Authorization": f"Bearer {world.tokens[user]}"}
    clients = {name: httpx.Client(base_url=s.base_url, timeout=30) for name, s in servers.items()}
    try:

        def each(method: str, path: str, **kwargs: Any) -> dict[str, httpx.Response]:
            return {
                name: client.request(method, path, **kwargs) for name, client in clients.items()
            }

        def bodies(responses: dict[str, httpx.Response], status: int) -> dict[str, Any]:
            for name, response in responses.items():
                if response.status_code != status:
                    raise Mismatch(f"{name}: {response.status_code} {response.text[:300]}")
            return {name: normal(response.json()) for name, response in responses.items()}

        # List, first page, and the next page through each server's own cursor.
        first = bodies(each("GET", "/api/v1/todos", headers=bearer), 200)
        same("list first page", {k: strip(v, "meta") for k, v in first.items()})
        same("list meta.count", {k: v["meta"]["count"] for k, v in first.items()})
        if any(v["meta"]["next_cursor"] is None for v in first.values()) or (
            len(next(iter(first.values()))["data"]) != 20
        ):
            raise Mismatch("list first page: 20 items and a next_cursor expected")
        second = {
            name: normal(
                clients[name]
                .get("/api/v1/todos", params={"cursor": v["meta"]["next_cursor"]}, headers=bearer)
                .json()
            )
            for name, v in first.items()
        }
        same("list second page (each app's own cursor)", {k: v["data"] for k, v in second.items()})
        checked.append("list first page + next page via cursor")
        # Deep page: each app's cursor for the same row.
        deep = {
            name: normal(
                clients[name]
                .get("/api/v1/todos", params={"cursor": world.deep[name][user]}, headers=bearer)
                .json()
            )
            for name in servers
        }
        same("deep page", {k: v["data"] for k, v in deep.items()})
        checked.append("deep keyset page")
        big = {"Authorization": f"Bearer {world.big_tokens[0]}"}
        same(
            "100k user first page",
            {
                k: v["data"]
                for k, v in bodies(each("GET", "/api/v1/todos", headers=big), 200).items()
            },
        )
        big_deep = {
            name: normal(
                clients[name]
                .get("/api/v1/todos", params={"cursor": world.big_deep[name]}, headers=big)
                .json()
            )
            for name in servers
        }
        same("100k user deep page", {k: v["data"] for k, v in big_deep.items()})
        checked.append("100k-todo user, first and deep page")
        # Unauthenticated and forged tokens.
        for headers in ({}, {"Authorization": "Bearer " + world.tokens[user][:-2] + "xx"}):
            statuses = {
                k: r.status_code for k, r in each("GET", "/api/v1/todos", headers=headers).items()
            }
            same("401 without a valid token", statuses)
            if next(iter(statuses.values())) != 401:
                raise Mismatch(f"expected 401, got {statuses}")
        checked.append("401 for missing and forged tokens")
        # Create.
        created = each(
            "POST",
            "/api/v1/todos",
            headers={**bearer, "Content-Type": "application/json"},
            content=CREATE_BODY,
        )
        created_bodies = bodies(created, 201)
        same(
            "create",
            {k: strip(v, "id", "created_at", "updated_at") for k, v in created_bodies.items()},
        )
        for name, response in created.items():
            if response.headers.get("etag") != '"1"' or not response.headers.get(
                "location", ""
            ).endswith(created_bodies[name]["id"]):
                raise Mismatch(f"create: {name} ETag/Location {dict(response.headers)}")
        checked.append("create (201, Location, ETag)")
        # Update with If-Match: each app its own fresh to-do, same starting state.
        patched, stale = {}, {}
        for name, client in clients.items():
            todo_id = created_bodies[name]["id"]
            headers = {**bearer, "Content-Type": "application/json", "If-Match": '"1"'}
            response = client.patch(
                f"/api/v1/todos/{todo_id}", headers=headers, content=b'{"title":"changed"}'
            )
            patched[name] = response
            stale[name] = client.patch(
                f"/api/v1/todos/{todo_id}", headers=headers, content=b'{"title":"again"}'
            )
        same(
            "update",
            {
                k: strip(v, "id", "created_at", "updated_at")
                for k, v in bodies(patched, 200).items()
            },
        )
        same("update ETag", {k: r.headers.get("etag") for k, r in patched.items()})
        same(
            "stale If-Match", {k: (r.status_code, r.headers.get("etag")) for k, r in stale.items()}
        )
        if next(iter(stale.values())).status_code != 412:
            raise Mismatch("stale If-Match: 412 expected")
        checked.append("update with If-Match (200 + ETag; stale version 412 + current ETag)")
        # Delta sync with a recent token.
        tokens = asyncio.run(world.sync_tokens(changed_per_user=3))
        sync = bodies(
            each("GET", "/api/v1/todos/changes", params={"since": tokens[user]}, headers=bearer),
            200,
        )
        same("delta sync", {k: v["data"] for k, v in sync.items()})
        same("delta sync meta", {k: v["meta"] for k, v in sync.items()})
        if any(not v["sync_token"] for v in sync.values()) or not next(iter(sync.values()))["data"]:
            raise Mismatch("delta sync: changes and a sync_token expected")
        checked.append("delta sync with a recent token")
        # Refresh rotation, then the replaced token again (within the leeway: the current one).
        refresh_tokens = asyncio.run(world.refresh_rows(len(servers)))
        answers, again = {}, {}
        for (name, client), token in zip(clients.items(), refresh_tokens, strict=True):
            cookie = {"Cookie": f"{REFRESH_COOKIE}={token}"}
            answers[name] = client.post("/api/v1/auth/refresh", headers=cookie)
            again[name] = client.post("/api/v1/auth/refresh", headers=cookie)
        refreshed = bodies(answers, 200)
        same("refresh", {k: sorted(v) for k, v in refreshed.items()})
        for name, response in answers.items():
            token = response.cookies.get(REFRESH_COOKIE) or ""
            if (
                token.split(".")[1:2] != ["1"]
                or response.headers.get("cache-control") != "no-store"
            ):
                raise Mismatch(f"refresh: {name} did not rotate to counter 1: {response.headers}")
            if again[name].cookies.get(REFRESH_COOKIE) != token:
                raise Mismatch(f"refresh: {name} did not answer a racing retry with the same token")
        checked.append("refresh rotation (counter+1, no-store; racing retry gets the same token)")
        # Login.
        body = {"login": "user2@bench.example", "password": stack.PASSWORD}
        logins = bodies(each("POST", "/api/v1/auth/login", json=body), 200)
        same("login keys", {k: sorted(v) for k, v in logins.items()})
        same("login user", {k: strip(v["user"], "last_login_at") for k, v in logins.items()})
        wrong = each("POST", "/api/v1/auth/login", json={**body, "password": "wrong password"})
        same("wrong password", {k: r.status_code for k, r in wrong.items()})
        checked.append("login (200 + same user; wrong password 401)")
    finally:
        for client in clients.values():
            client.close()
    return checked


# --- fixed-rate mixed load and the login storm ---------------------------------------------------
class MixedSender:
    """The wrk.lua mix (80 list / 10 update / 7 create / 2 refresh / 1 login) for loadgen."""

    def __init__(self, client: Client, files: Path) -> None:
        self.client = client
        read = lambda name: [  # noqa: E731
            line.split("\t") for line in (files / f"{name}.tsv").read_text().splitlines() if line
        ]
        self.gets, self.posts, self.logins = read("get"), read("post"), read("login")
        self.updates = deque(read("update"))
        self.refreshes = deque(row[0] for row in read("refresh"))
        counts = {"get": 80, "update": 10, "post": 7, "refresh": 2, "login": 1}
        slots = [((k + 0.5) / n, kind) for kind, n in counts.items() for k in range(n)]
        self.schedule = [kind for _, kind in sorted(slots)]

    async def __call__(self, i: int) -> tuple[str, bool]:
        kind = self.schedule[i % len(self.schedule)]
        if kind == "update" and self.updates:
            todo, token, version = self.updates.popleft()
            response = await self.client.request(
                "PATCH",
                f"/api/v1/todos/{todo}",
                {
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "application/json",
                    "If-Match": f'"{version}"',
                },
                b'{"title":"updated"}',
            )
            if response.status == 200:
                self.updates.append([todo, token, str(json.loads(response.body)["version"])])
            return verdict(kind, response.status, 200)
        if kind == "refresh" and self.refreshes:
            token = self.refreshes.popleft()
            response = await self.client.request(
                "POST", "/api/v1/auth/refresh", {"Cookie": f"{REFRESH_COOKIE}={token}"}
            )
            if response.status == 200:
                self.refreshes.append(response.cookies()[REFRESH_COOKIE])
            return verdict(kind, response.status, 200)
        if kind == "post":
            path, token, body = self.posts[i % len(self.posts)]
            response = await self.client.request(
                "POST",
                path,
                {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                body.encode(),
            )
            return verdict(kind, response.status, 201)
        if kind == "login":
            body = self.logins[i % len(self.logins)][0]
            response = await self.client.request(
                "POST", "/api/v1/auth/login", {"Content-Type": "application/json"}, body.encode()
            )
            return verdict(kind, response.status, 200)
        path, token = self.gets[i % len(self.gets)]
        response = await self.client.request("GET", path, {"Authorization": f"Bearer {token}"})
        return verdict("get", response.status, 200)


def verdict(kind: str, status: int, expected: int) -> tuple[str, bool]:
    """(kind, ok); a failure is recorded under its kind and status."""
    return (kind, True) if status == expected else (f"{kind} {status}", False)


async def fixed_rate_mixed(
    server: stack.Server, files: Path, rate: float, seconds: float
) -> dict[str, Any]:
    client = Client(server.base_url)
    sender = MixedSender(client, files)
    recorded = await fixed_rate(rate, seconds, sender)
    await client.close()
    without_login = [
        ms for kind, values in recorded.by_kind.items() if kind != "login" for ms in values
    ]
    return {
        "rate": rate,
        "p50_ms": percentile(recorded.latencies_ms, 0.5),
        "p99_ms": percentile(recorded.latencies_ms, 0.99),
        "p99_no_login_ms": percentile(without_login, 0.99),
        "login_p50_ms": percentile(recorded.by_kind.get("login", []), 0.5),
        "errors": recorded.errors,
        "error_kinds": dict(recorded.failures),
        "requests": len(recorded.latencies_ms),
        "generator_lag_ms": recorded.lag_ms,
    }


async def list_latency(server: stack.Server, world: World, rate: float, seconds: float) -> Any:
    client = Client(server.base_url)
    rows = [line.split("\t") for line in world.list_rows()]

    async def send(i: int) -> tuple[str, bool]:
        path, token = rows[i % len(rows)]
        response = await client.request("GET", path, {"Authorization": f"Bearer {token}"})
        return "get", response.status == 200

    recorded = await fixed_rate(rate, seconds, send)
    await client.close()
    return recorded


class Storm:
    """`size` logins always in flight (each worker sends the next when its last one returns)."""

    def __init__(self, base_url: str, bodies: list[bytes], size: int = 20) -> None:
        self.client = Client(base_url)
        self.bodies, self.size = bodies, size
        self.stop = asyncio.Event()
        self.count, self.errors = 0, 0
        self.latencies_ms: list[float] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def worker(self, k: int) -> None:
        i = k
        while not self.stop.is_set():
            started = time.perf_counter()
            response = await self.client.request(
                "POST",
                "/api/v1/auth/login",
                {"Content-Type": "application/json"},
                self.bodies[i % len(self.bodies)],
            )
            self.latencies_ms.append((time.perf_counter() - started) * 1000)
            self.count += 1
            self.errors += response.status != 200
            i += self.size

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self.worker(k)) for k in range(self.size)]

    async def finish(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks)
        await self.client.close()


async def login_storm(
    server: stack.Server, world: World, rate: float, seconds: float, rounds: int
) -> dict[str, Any]:
    """List latency at a fixed rate, alone and while 20 logins are always in flight."""
    bodies = [row.encode() for row in world.login_rows()]
    idle_p50, idle_p99, storm_p50, storm_p99, rates = [], [], [], [], []
    errors = 0
    login_ms: list[float] = []
    for _ in range(rounds):
        quiet = await list_latency(server, world, rate, seconds)
        idle_p50.append(percentile(quiet.latencies_ms, 0.5))
        idle_p99.append(percentile(quiet.latencies_ms, 0.99))
        storm = Storm(server.base_url, bodies)
        storm.start()
        await asyncio.sleep(1.0)  # 20 logins in flight before measuring
        counted, started = storm.count, time.perf_counter()
        busy = await list_latency(server, world, rate, seconds)
        rates.append((storm.count - counted) / (time.perf_counter() - started))
        await storm.finish()
        storm_p50.append(percentile(busy.latencies_ms, 0.5))
        storm_p99.append(percentile(busy.latencies_ms, 0.99))
        errors += quiet.errors + busy.errors + storm.errors
        login_ms += storm.latencies_ms
        settle(server.process.pid)
    return {
        "list_rate": rate,
        "idle_p50_ms": statistics.median(idle_p50),
        "idle_p99_ms": statistics.median(idle_p99),
        "storm_p50_ms": statistics.median(storm_p50),
        "storm_p99_ms": statistics.median(storm_p99),
        "ratio_p99": statistics.median(storm_p99) / statistics.median(idle_p99),
        "logins_per_s": statistics.median(rates),
        "login_p50_ms": percentile(login_ms, 0.5),
        "errors": errors,
    }


def argon2_capacity() -> tuple[float, float]:
    """(seconds per hash on one thread, hashes/s with one thread per core) with the production
    parameters, in this process: the login bound the servers are held to."""
    from concurrent.futures import ThreadPoolExecutor

    hasher = stack.hasher()
    stored = hasher.hash(stack.PASSWORD)
    times = []
    for _ in range(5):
        started = time.perf_counter()
        hasher.verify(stored, stack.PASSWORD)
        times.append(time.perf_counter() - started)
    cores = os.cpu_count() or 1
    count = 6 * cores
    with ThreadPoolExecutor(cores) as pool:
        started = time.perf_counter()
        list(pool.map(lambda _: hasher.verify(stored, stack.PASSWORD), range(count)))
        parallel = count / (time.perf_counter() - started)
    return statistics.median(times), parallel


# --- the run ---------------------------------------------------------------------------------------
SCENARIOS = [
    Scenario("list", "List, first page (20)", "get", 0),
    Scenario("deep", "List, deep keyset page (half-way)", "get", 0),
    Scenario("big", "List, 100k-todo user, first page", "get", 0),
    Scenario("big_deep", "List, 100k-todo user, deep page (50k)", "get", 0),
    Scenario("sync", "Delta sync, recent token (3 changes)", "get", 0),
    Scenario("create", "Create", "post", 0),
    Scenario("update", "Update with If-Match", "update", 0),
    Scenario("refresh", "Refresh rotation", "refresh", 0),
    Scenario("login", "Login (production argon2)", "login", -2),
    Scenario("mixed", "Mixed multi-device (80/10/7/2/1)", "mixed", -1),
]


def wait_until_quiet(limit: float) -> None:
    """Wait (up to `limit` seconds) until other processes use < 0.25 cores over 5 s: on a
    shared machine, someone else's test run would skew every figure."""
    deadline = time.monotonic() + limit
    while True:
        before = busy_seconds()
        time.sleep(5)
        other = (busy_seconds() - before) / 5
        if other < 0.25:
            log(f"machine quiet ({other:.2f} cores busy)")
            return
        if time.monotonic() > deadline:
            log(f"machine still busy ({other:.2f} cores used by others): going ahead anyway")
            return
        log(f"waiting for a quiet machine ({other:.2f} cores used by other processes)")


def run(config: Config, profile: bool, only: set[str]) -> dict[str, Any]:
    wrk = ensure_wrk()
    load_at_start = round(os.getloadavg()[0], 2)
    work = Path(tempfile.mkdtemp(prefix="todo-api-bench-run-"))
    log(f"starting PostgreSQL (work dir {work})")
    pg = stack.start_pg()
    servers: dict[str, stack.Server] = {}
    try:
        postmaster = int((pg.data_dir / "postmaster.pid").read_text().splitlines()[0])
        world = World(config, pg.url(), postmaster, work)
        log(
            f"seeding {config.users} users x {config.todos_per_user} to-dos "
            f"+ 1 user x {config.big_todos} (SQL generate_series)"
        )
        asyncio.run(world.prepare())
        assert world.seeded is not None
        log(f"seeded in {world.seeded.seconds:.1f} s")
        for name in APPS:
            servers[name] = stack.start_server(name, pg.url(), work, config.workers)
            log(f"{name} serving at {servers[name].base_url} (pid {servers[name].process.pid})")
        checked = check_equivalence(servers, world)
        log(f"equivalent bodies: {len(checked)} checks passed")
        if profile:
            return {"profile": profile_ours(wrk, servers["ours"], world, 20)}
        cores = os.cpu_count() or 1
        hashing: list[tuple[float, float]] = []
        results: dict[str, dict[str, Any]] = {}
        mixed_files: dict[str, Path] = {}
        for scenario in SCENARIOS:
            if only and scenario.name not in only:
                continue
            c = {
                0: config.connections,
                -1: config.mixed_connections,
                -2: config.login_connections,
            }[scenario.connections]
            seconds = config.login_seconds if scenario.name == "login" else config.duration
            runs: dict[str, list[Run]] = {app: [] for app in scenario.apps}
            sync = asyncio.run(world.sync_tokens()) if scenario.name == "sync" else {}
            warm_up(wrk, [servers[a] for a in scenario.apps], world, scenario, c, sync)
            for _ in range(config.rounds):
                if scenario.name == "login":  # the bound, measured next to each round
                    hashing.append(argon2_capacity())
                for app in scenario.apps:
                    files = asyncio.run(world.files(scenario.name, app, sync))
                    runs[app].append(
                        run_wrk(wrk, servers[app], world, scenario.mode, files, seconds, c)
                    )
                    if scenario.name == "mixed":
                        mixed_files[app] = files
            results[scenario.name] = {app: median_run(r) for app, r in runs.items()}
            results[scenario.name]["connections"] = c
            summary = ", ".join(
                f"{app} {results[scenario.name][app]['rps']:.0f}/s" for app in scenario.apps
            )
            log(f"{scenario.title}: {summary}")
        hash_seconds = statistics.median(h[0] for h in hashing) if hashing else float("nan")
        hash_parallel = statistics.median(h[1] for h in hashing) if hashing else float("nan")
        if hashing:
            log(
                f"argon2 (production parameters): {hash_seconds * 1000:.0f} ms a hash on one "
                f"thread, {hash_parallel:.1f} hashes/s on {cores} threads ({cores} cores)"
            )
        # Mixed at a fixed rate of half each server's saturation throughput.
        fixed: dict[str, Any] = {}
        for app in APPS if "mixed" in results else ():
            rate = results["mixed"][app]["rps"] / 2
            files = asyncio.run(world.files("mixed", app, {}))
            fixed[app] = asyncio.run(
                fixed_rate_mixed(servers[app], files, rate, config.fixed_seconds)
            )
            log(f"mixed at {rate:.0f}/s fixed rate, {app}: p99 {fixed[app]['p99_ms']:.1f} ms")
        if only:
            return {"results": results, "fixed": fixed, "only": True}
        # The login storm (ours): list at a quarter of its saturation, alone vs 20 logins.
        storm_rate = min(results["list"]["ours"]["rps"] / 4, 400.0)
        storm = asyncio.run(
            login_storm(
                servers["ours"], world, storm_rate, config.storm_seconds, config.storm_rounds
            )
        )
        log(
            f"login storm: list p99 {storm['idle_p99_ms']:.1f} -> {storm['storm_p99_ms']:.1f} ms "
            f"({storm['logins_per_s']:.1f} logins/s)"
        )
        return {
            "checked": checked,
            "results": results,
            "fixed": fixed,
            "storm": storm,
            "argon2_seconds": hash_seconds,
            "load_at_start": load_at_start,
            "argon2_parallel_per_s": hash_parallel,
            "cores": cores,
            "seed_seconds": world.seeded.seconds,
        }
    finally:
        for server in servers.values():
            stack.stop_server(server)
        pg.delete()
        shutil.rmtree(pg.data_dir.parent, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def profile_ours(wrk: str, server: stack.Server, world: World, seconds: int) -> dict[str, Any]:
    """py-spy record of ours under the list load; the top functions by own and total time."""
    from benchmarks.profile import record

    files = asyncio.run(world.files("list", "ours", {}))
    return record(
        server.process.pid,
        lambda: run_wrk(wrk, server, world, "get", files, seconds, world.config.connections),
        seconds,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small seed, one round (< 2 min)")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="SECONDS",
        help="first wait up to SECONDS for other processes to leave the CPU alone",
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated scenario names to run (development; no report is written)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="py-spy profile of ours under list load instead"
    )
    args = parser.parse_args()
    config = QUICK if args.quick else FULL
    started = time.perf_counter()
    if args.wait_quiet:
        wait_until_quiet(args.wait_quiet)
    only = {name for name in args.only.split(",") if name}
    outcome = run(config, args.profile, only)
    if args.profile:
        from benchmarks.profile import write

        write(outcome["profile"], RESULTS / "profile.txt")
        print((RESULTS / "profile.txt").read_text())
        return
    if only:
        print(json.dumps({k: outcome[k] for k in ("results", "fixed")}, indent=1))
        return
    from benchmarks.report import write_all

    paths = write_all(outcome, config, args.quick, time.perf_counter() - started)
    print(paths["md"].read_text())
    log(
        f"done in {time.perf_counter() - started:.0f} s: "
        + ", ".join(str(p) for p in paths.values())
    )


if __name__ == "__main__":
    main()
