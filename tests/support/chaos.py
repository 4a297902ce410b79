"""Fault injection against real `serve` processes: the building blocks of tests/test_chaos.py,
and the phases of the long run behind `just chaos` (tests/chaos_run.py).

Servers are started with tests/support/serving.py and driven over HTTP with httpx; what
PostgreSQL really holds afterwards is checked against what the clients were told.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from tests.support.accounts import Device, new_user_on
from tests.support.cli import CLI, REPO_ROOT
from tests.support.serving import (
    GRACEFUL_SHUTDOWN_SECONDS,
    HTTP_TIMEOUT,
    ServeProcess,
    answers_ready,
    app_env,
    http,
    serving,
)
from tests.support.waiting import wait_for
from todo_api.ops.embedded import EmbeddedPostgres

# What the app's pool calls its connections in pg_stat_activity (todo_api/core/db.py).
APP_NAME = "todo-api"


# --- database inspection ---------------------------------------------------------------------


async def app_backends(conn: asyncpg.Connection, where: str = "true") -> list[asyncpg.Record]:
    """The app's connections to this database, as PostgreSQL sees them."""
    return await conn.fetch(
        "SELECT pid, state, wait_event_type FROM pg_stat_activity "
        f"WHERE application_name = $1 AND datname = current_database() AND ({where})",
        APP_NAME,
    )


async def terminate_app_backends(conn: asyncpg.Connection, where: str = "true") -> int:
    """pg_terminate_backend every (matching) connection of the app to this database."""
    rows = await conn.fetch(
        "SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity "
        f"WHERE application_name = $1 AND datname = current_database() AND ({where})",
        APP_NAME,
    )
    return sum(1 for row in rows if row["done"])


# --- a network path to PostgreSQL that can stall ---------------------------------------------

# The untyped requests a client may send before its StartupMessage.
_SSL_REQUEST, _GSSENC_REQUEST = 80877103, 80877104


class StallingProxy:
    """A loopback TCP proxy in front of PostgreSQL that understands just enough of the wire
    protocol to stall a client *between* statements: after `stall_after_next_sync()`, the
    client's messages pass up to and including its next Sync (so the server has answered and
    its transaction sits idle), and everything after it is held back until `resume()`.

    That is what a stuck app or a lossy network looks like from the server: a transaction idle
    in the middle, its locks held. Answers from the server always pass.
    """

    def __init__(self, upstream_url: str) -> None:
        parts = urlsplit(upstream_url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self.upstream_url = upstream_url
        self._server: asyncio.Server | None = None
        self._armed = False
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        """`upstream_url`, through the proxy."""
        parts = urlsplit(self.upstream_url)
        netloc = parts.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{self.port}"
        return urlunsplit(
            parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host)
        )

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def stall_after_next_sync(self) -> None:
        self._armed = True

    def resume(self) -> None:
        self._armed = False
        self._flowing.set()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.wait_for(asyncio.open_connection(*self.upstream), 5)
        except OSError:
            client_w.close()
            return
        self._writers |= {client_w, server_w}
        for pump in (self._to_server(client_r, server_w), self._copy(server_r, client_w)):
            task = asyncio.create_task(pump)
            self._tasks.add(task)
            task.add_done_callback(lambda _: (client_w.close(), server_w.close()))

    async def _copy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()

    async def _to_server(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:  # untyped start-up packets: [length][code]...
                header = await reader.readexactly(8)
                length, code = int.from_bytes(header[:4]), int.from_bytes(header[4:])
                writer.write(header + await reader.readexactly(length - 8))
                await writer.drain()
                if code not in (_SSL_REQUEST, _GSSENC_REQUEST):
                    break
            while True:  # then typed messages: [type][length][body]
                await self._flowing.wait()
                header = await reader.readexactly(5)
                body = await reader.readexactly(int.from_bytes(header[1:]) - 4)
                writer.write(header + body)
                await writer.drain()
                if header[:1] == b"S" and self._armed:
                    self._armed = False
                    self._flowing.clear()


# --- idempotent creations under fire ---------------------------------------------------------


@dataclass
class Creation:
    """One POST /api/v1/todos with its own Idempotency-Key, and what became of it."""

    key: str
    title: str
    status: int | None = None  # None: no answer (refused, cut off, or never sent)
    todo_id: str | None = None
    replayed: bool = False
    error: str | None = None
    # Every answer so far (status, or the httpx error's name), with its duration and Retry-After.
    answers: list[tuple[int | str, float, str | None]] = field(default_factory=list)

    @property
    def acknowledged(self) -> bool:
        return self.status == 201


def creations(count: int, label: str) -> list[Creation]:
    run = uuid.uuid4().hex[:8]
    return [Creation(key=f"{label}-{run}-{i}", title=f"{label} {run} #{i}") for i in range(count)]


async def post_creation(client: httpx.AsyncClient, token: str, item: Creation) -> None:
    started = time.monotonic()
    try:
        response = await client.post(
            "/api/v1/todos",
            json={"title": item.title},
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": item.key},
        )
    except httpx.HTTPError as exc:
        item.status, item.error = None, type(exc).__name__
        item.answers.append((item.error, time.monotonic() - started, None))
        return
    item.status = response.status_code
    item.answers.append(
        (response.status_code, time.monotonic() - started, response.headers.get("retry-after"))
    )
    if response.status_code == 201:
        item.todo_id = response.json()["id"]
        item.replayed = response.headers.get("idempotent-replayed") == "true"
        item.error = None
    else:
        item.error = response.text[:300]


async def run_creations(
    base_url: str,
    token: str,
    items: Sequence[Creation],
    concurrency: int,
    after_each: Callable[[Creation], None] | None = None,
    stop: asyncio.Event | None = None,
    retry_503: int = 0,
    client_timeout: httpx.Timeout = HTTP_TIMEOUT,
) -> None:
    """POST every item, `concurrency` at a time; once `stop` is set, send no more. With
    `retry_503`, an item answered 503 is retried (same key) up to that many times after a short
    pause, as a client honouring Retry-After would."""
    queue = list(reversed(items))
    async with http(base_url, concurrency, client_timeout) as client:

        async def worker() -> None:
            while queue and not (stop is not None and stop.is_set()):
                item = queue.pop()
                for attempt in range(retry_503 + 1):
                    await post_creation(client, token, item)
                    if after_each is not None:
                        after_each(item)
                    if item.status != 503 or attempt == retry_503:
                        break
                    await asyncio.sleep(0.5)

        await asyncio.gather(*(worker() for _ in range(concurrency)))


@dataclass
class FaultAt:
    """An `after_each` for run_creations: once `threshold` creations are acknowledged, `fire`
    (once) and set `stop`, so the load sends nothing more."""

    threshold: int
    fire: Callable[[], None]
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    acknowledged: int = 0

    def __call__(self, item: Creation) -> None:
        self.acknowledged += item.acknowledged
        if self.acknowledged >= self.threshold and not self.stop.is_set():
            self.fire()
            self.stop.set()


async def retry_unacknowledged(
    base_url: str, token: str, items: Sequence[Creation], concurrency: int = 10, rounds: int = 5
) -> None:
    """Retry (same key, same body) every creation without a 201, as a client would."""
    for _ in range(rounds):
        pending = [item for item in items if not item.acknowledged]
        if not pending:
            return
        await run_creations(base_url, token, pending, concurrency)
        if any(not item.acknowledged for item in pending):
            await asyncio.sleep(0.5)


@dataclass
class Ledger:
    """What the database holds for one owner, compared with what its client was told."""

    acknowledged: int  # creations answered 201
    acknowledged_found: int  # ... whose to-do exists, with the id that was acknowledged
    rows: int  # to-dos of the owner
    keys: int  # idempotency keys of the owner
    half_written: list[str]  # rows or keys not fully written
    duplicates: list[str]  # titles stored more than once
    mismatched: list[str]  # a key pointing at another to-do than the one acknowledged


async def ledger(conn: asyncpg.Connection, owner_id: str, items: Sequence[Creation]) -> Ledger:
    owner = uuid.UUID(owner_id)
    rows = await conn.fetch(
        "SELECT id, title, version, owner, deleted_at FROM todo WHERE owner = $1", owner
    )
    by_id = {str(row["id"]): row for row in rows}
    keys = {
        row["key"]: row
        for row in await conn.fetch(
            "SELECT key, todo_id, response FROM idempotency_key WHERE owner = $1", owner
        )
    }
    acked = [item for item in items if item.acknowledged]
    half_written = [
        f"todo {row['id']}: title {row['title']!r}, version {row['version']}"
        for row in rows
        if not row["title"] or row["version"] != 1 or row["owner"] != owner or row["deleted_at"]
    ]
    half_written += [
        f"key {key}: todo_id {row['todo_id']}"
        for key, row in keys.items()
        if row["todo_id"] is None or row["response"] is None or str(row["todo_id"]) not in by_id
    ]
    seen: dict[str, int] = {}
    for row in rows:
        seen[row["title"]] = seen.get(row["title"], 0) + 1
    mismatched = []
    for item in items:
        key = keys.get(item.key)
        if item.acknowledged and (key is None or str(key["todo_id"]) != item.todo_id):
            mismatched.append(f"{item.key}: acknowledged {item.todo_id}, stored {key}")
        elif (
            key is not None
            and (row := by_id.get(str(key["todo_id"]))) is not None
            and row["title"] != item.title
        ):
            mismatched.append(f"{item.key}: title {row['title']!r}, sent {item.title!r}")
    return Ledger(
        acknowledged=len(acked),
        acknowledged_found=sum(1 for item in acked if item.todo_id in by_id),
        rows=len(rows),
        keys=len(keys),
        half_written=half_written,
        duplicates=sorted(title for title, count in seen.items() if count > 1),
        mismatched=mismatched,
    )


# --- cleanup in several processes at once ----------------------------------------------------

CLEANUP_LINE = re.compile(
    r"cleanup: deleted (\d+) sessions, (\d+) to-do tombstones, (\d+) idempotency keys, "
    r"(\d+) audit events, (\d+) admin sessions"
)
CLEANUP_BUSY = "another process holds the cleanup lock"
# How the app logs an exception it turned into a 500 (todo_api/core/errors.py).
UNHANDLED = re.compile(r"ERROR +todo_api(?:\.\w+)*: unhandled (\w+)")


async def seed_dead_rows(conn: asyncpg.Connection, events: int, sessions: int) -> None:
    """Audit events past retention, and sessions revoked 2 days ago (past their 1-day keep)."""
    await conn.execute(
        "INSERT INTO auth_event (id, type, ip, user_agent, created_at, detail) "
        "SELECT gen_random_uuid(), 'login_failed', '', '', now() - interval '400 days', '{}' "
        "FROM generate_series(1, $1)",
        events,
    )
    user = uuid.uuid4()
    await conn.execute(
        "INSERT INTO app_user (id, email, password_hash) VALUES ($1, $2, 'not a hash')",
        user,
        f"dead-{user.hex}@example.com",
    )
    await conn.execute(
        'INSERT INTO device_session (id, "user", device_name, expires_at, refresh_salt, '
        "revoked_at, revoke_reason) SELECT gen_random_uuid(), $1, 'old', "
        "now() + interval '20 days', 'salt', now() - interval '2 days', 'logout' "
        "FROM generate_series(1, $2)",
        user,
        sessions,
    )


@dataclass
class CleanupOutcome:
    returncodes: list[int | None]
    outputs: list[str]
    sessions_deleted: int
    events_deleted: int
    busy: int  # processes that found the lock taken and did nothing


def run_concurrent_cleanups(database_url: str, processes: int = 2) -> CleanupOutcome:
    """`python -m todo_api cleanup` in `processes` processes started together."""
    env = app_env(database_url)
    started = [
        subprocess.Popen(  # our own CLI
            [*CLI, "cleanup"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    outputs = []
    try:
        for process in started:
            out, err = process.communicate(timeout=60)
            outputs.append(out + err)
    finally:
        for process in started:
            if process.returncode is None:
                process.kill()
                process.wait(timeout=10)
    sessions = events = busy = 0
    for output in outputs:
        if match := CLEANUP_LINE.search(output):
            sessions += int(match.group(1))
            events += int(match.group(4))
        busy += CLEANUP_BUSY in output
    return CleanupOutcome(
        [process.returncode for process in started], outputs, sessions, events, busy
    )


# --- the long run ----------------------------------------------------------------------------


@dataclass
class Tally:
    sigkills: int = 0
    sigterms: int = 0
    postgres_stops: int = 0
    backends_terminated: int = 0
    cleanup_rounds: int = 0
    cleanup_busy: int = 0
    keys: int = 0
    acknowledged: int = 0  # answered 201 before the retries that follow each phase
    acknowledged_found: int = 0
    rows_after_retries: int = 0
    replayed: int = 0
    cut_after_sigterm: int = 0
    cut_but_applied: int = 0
    slowest_503: float = 0.0
    answers: dict[str, int] = field(default_factory=dict)
    db_fault_503: int = 0
    slow_503: int = 0
    unexpected_5xx: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def count_answers(self, items: Sequence[Creation], during_db_fault: bool = False) -> None:
        """Count every answer received (retries included) and flag unexpected 5xx."""
        for item in items:
            for status, seconds, retry_after in item.answers:
                self.answers[str(status)] = self.answers.get(str(status), 0) + 1
                if not isinstance(status, int) or status < 500:
                    continue
                if status == 503 and during_db_fault:
                    self.db_fault_503 += 1
                    self.slow_503 += seconds > 2.0
                    self.slowest_503 = max(self.slowest_503, seconds)
                    self.check(bool(retry_after), f"503 without Retry-After for {item.key}")
                else:
                    self.unexpected_5xx.append(f"{status} for {item.key}: {item.error}")
            item.answers.clear()

    def check(self, condition: bool, message: str) -> None:
        if not condition:
            self.failures.append(message)


async def settle(
    tally: Tally, database_url: str, log_dir: Path, account: Device, items: list[Creation]
) -> None:
    """Acknowledged == found; then retry the rest on a fresh server: each key applied once."""
    conn = await asyncpg.connect(database_url)
    try:
        before = await ledger(conn, account.user_id, items)
        async with serving([app_env(database_url)], log_dir) as (server,):
            await retry_unacknowledged(server.url, account.access_token, items)
        tally.count_answers(items)
        after = await ledger(conn, account.user_id, items)
    finally:
        await conn.close()
    tally.keys += len(items)
    tally.acknowledged += before.acknowledged
    tally.acknowledged_found += before.acknowledged_found
    tally.rows_after_retries += after.rows
    tally.replayed += sum(item.replayed for item in items)
    tally.check(
        before.acknowledged == before.acknowledged_found,
        f"{before.acknowledged} acknowledged but {before.acknowledged_found} found",
    )
    tally.check(after.acknowledged == len(items), "some creations never succeeded on retry")
    tally.check(after.rows == len(items), f"{after.rows} rows for {len(items)} keys")
    tally.check(not after.half_written, f"half-written: {after.half_written[:5]}")
    tally.check(not after.duplicates, f"stored twice: {after.duplicates[:5]}")
    tally.check(not after.mismatched, f"mismatched: {after.mismatched[:5]}")
    print(
        f"    acknowledged {before.acknowledged}, found {before.acknowledged_found}; after "
        f"retrying the rest: {after.rows} rows for {len(items)} keys "
        f"({sum(item.replayed for item in items)} retries answered by replay)"
    )


async def fresh_account(database_url: str, log_dir: Path) -> Device:
    async with serving([app_env(database_url)], log_dir) as (server,), http(server.url) as client:
        return await new_user_on(client)


async def phase_process_faults(
    tally: Tally,
    database_url: str,
    log_dir: Path,
    sig: signal.Signals,
    rounds: int,
    per_round: int,
    workers: int,
) -> None:
    """`sig` to `serve` at a random point of each round's load of creations.

    SIGKILL goes to the whole process group of a 2-worker server, as when a container dies.
    SIGTERM goes to a 1-worker server, as an orchestrator sends it: requests in flight are
    answered, the process shuts down cleanly. Either way nothing acknowledged may be lost.
    """
    account = await fresh_account(database_url, log_dir)
    items: list[Creation] = []
    for round_ in range(rounds):
        batch = creations(per_round, f"{sig.name.lower()}{round_}")
        items += batch
        env = app_env(database_url, WEB_CONCURRENCY="2" if sig == signal.SIGKILL else "1")
        server = ServeProcess(env, log_dir / f"{sig.name.lower()}-{round_}.log")
        fire = partial(server.kill_group if sig == signal.SIGKILL else server.send, sig)
        fault = FaultAt(random.randint(per_round // 10, per_round * 9 // 10), fire)
        try:
            server.start()
            await server.wait_ready()
            await run_creations(server.url, account.access_token, batch, workers, fault, fault.stop)
            tally.check(fault.stop.is_set(), f"{sig.name} round {round_}: load ended first")
            code = await asyncio.to_thread(server.wait, GRACEFUL_SHUTDOWN_SECONDS + 5)
            if sig == signal.SIGTERM:
                log = server.log()
                tally.check(
                    code in (0, -signal.SIGTERM) and "Application shutdown complete." in log,
                    f"SIGTERM round {round_}: exit {code}, log:\n{log[-1500:]}",
                )
        finally:
            server.stop()
        if sig == signal.SIGKILL:
            tally.sigkills += 1
        else:
            tally.sigterms += 1
            # uvicorn closes connections whose request it has not read yet: such a request is
            # cut, and must not have been applied either.
            cut = [item.key for item in batch if item.answers and item.status is None]
            tally.cut_after_sigterm += len(cut)
            conn = await asyncpg.connect(database_url)
            try:
                applied = await conn.fetchval(
                    "SELECT count(*) FROM idempotency_key WHERE key = ANY($1)", cut
                )
            finally:
                await conn.close()
            tally.cut_but_applied += applied
            tally.check(not applied, f"SIGTERM round {round_}: {applied} cut requests applied")
        tally.count_answers(batch)
        print(
            f"  {sig.name} {round_ + 1}/{rounds} after {fault.acknowledged} acknowledged "
            f"creations: exit {code}"
        )
    await settle(tally, database_url, log_dir, account, items)


async def phase_database_faults(
    tally: Tally,
    cluster: EmbeddedPostgres,
    log_dir: Path,
    rounds: int,
    per_round: int,
    workers: int,
) -> None:
    """Under a load of clients that retry 503s: PostgreSQL stopped for 2 s and started again
    (even rounds), or the app's backends terminated every 0.1 s for 1.5 s (odd rounds). The
    same server must recover by itself, and still shut down cleanly on SIGTERM afterwards."""
    database_url = cluster.url()
    account = await fresh_account(database_url, log_dir)
    items: list[Creation] = []
    for round_ in range(rounds):
        batch = creations(per_round, f"db{round_}")
        items += batch
        env = app_env(database_url, DB_POOL_MAX="20", REQUEST_TIMEOUT_SECONDS="10")
        server = ServeProcess(env, log_dir / f"db-fault-{round_}.log")
        stop = asyncio.Event()
        try:
            server.start()
            await server.wait_ready()
            load = asyncio.create_task(
                run_creations(
                    server.url, account.access_token, batch, workers, stop=stop, retry_503=20
                )
            )
            await asyncio.sleep(0.3)
            if round_ % 2 == 0:
                await asyncio.to_thread(cluster.stop)
                tally.postgres_stops += 1
                await asyncio.sleep(2.0)
                await asyncio.to_thread(cluster.start)
                what = "PostgreSQL stopped for 2 s"
            else:
                conn = await asyncpg.connect(database_url)
                try:
                    killed = 0
                    for _ in range(15):
                        killed += await terminate_app_backends(conn)
                        await asyncio.sleep(0.1)
                finally:
                    await conn.close()
                tally.backends_terminated += killed
                what = f"{killed} backends terminated"
            # Clients give up on whatever is still queued after 30 s (a stuck server).
            done, _ = await asyncio.wait({load}, timeout=30)
            stop.set()
            await asyncio.wait_for(load, timeout=30)
            tally.check(bool(done), f"database round {round_} ({what}): the load got stuck")
            try:
                await wait_for(partial(answers_ready, server.url), seconds=10, what="/ready")
            except AssertionError:
                tally.check(False, f"database round {round_} ({what}): not ready again")
            code = None
            server.send(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                # Nothing is in flight any more: the shutdown has no reason to take long.
                code = await asyncio.to_thread(server.wait, 10)
            tally.check(
                code is not None and "Application shutdown complete." in server.log(),
                f"database round {round_} ({what}): SIGTERM did not shut down within 10 s",
            )
        finally:
            server.stop(grace=0)
        answers = [answer[0] for item in batch for answer in item.answers]
        print(
            f"  database fault {round_ + 1}/{rounds} ({what}): {answers.count(503)} answers 503, "
            f"{answers.count(500)} answers 500, {sum(not isinstance(a, int) for a in answers)} "
            f"without answer; {sum(item.acknowledged for item in batch)}/{per_round} "
            f"acknowledged; exit {code}"
        )
        tally.count_answers(batch, during_db_fault=True)
    await settle(tally, database_url, log_dir, account, items)


async def phase_cleanups(tally: Tally, database_url: str, rounds: int, processes: int) -> None:
    """The cleanup job in several processes at once: the work is done once, without errors."""
    conn = await asyncpg.connect(database_url)
    try:
        for round_ in range(rounds):
            events, sessions = 50_000, 2_000
            await seed_dead_rows(conn, events, sessions)
            outcome = await asyncio.to_thread(run_concurrent_cleanups, database_url, processes)
            tally.cleanup_rounds += 1
            tally.cleanup_busy += outcome.busy
            tally.check(
                outcome.returncodes == [0] * processes,
                f"cleanup exit codes {outcome.returncodes}: {outcome.outputs}",
            )
            tally.check(
                not any("Traceback" in output for output in outcome.outputs),
                f"a cleanup printed a traceback: {outcome.outputs}",
            )
            tally.check(
                (outcome.events_deleted, outcome.sessions_deleted) == (events, sessions),
                f"cleanup round {round_}: deleted {outcome.events_deleted}/{events} events, "
                f"{outcome.sessions_deleted}/{sessions} sessions",
            )
            print(
                f"  cleanup {round_ + 1}/{rounds}: {outcome.events_deleted}/{events} events and "
                f"{outcome.sessions_deleted}/{sessions} sessions deleted in all; "
                f"{outcome.busy} of {processes} processes found the lock taken"
            )
    finally:
        await conn.close()


def report(tally: Tally, seconds: float, log_dir: Path) -> None:
    unhandled: dict[str, int] = {}
    for log in log_dir.glob("*.log"):
        for name in UNHANDLED.findall(log.read_text(errors="replace")):
            unhandled[name] = unhandled.get(name, 0) + 1
    print(
        f"\nchaos summary ({seconds:.0f} s"
        f"{f'; server logs kept in {log_dir}' if failed(tally) else ''})\n"
        f"  faults injected: {tally.sigkills} SIGKILL, {tally.sigterms} SIGTERM, "
        f"{tally.postgres_stops} PostgreSQL stops, {tally.backends_terminated} backends "
        f"terminated, {tally.cleanup_rounds} rounds of concurrent cleanups "
        f"({tally.cleanup_busy} processes found the lock taken)\n"
        f"  acknowledged creations: {tally.acknowledged}, rows found for them: "
        f"{tally.acknowledged_found} (must be equal)\n"
        f"  after clients retried the rest: {tally.rows_after_retries} rows for {tally.keys} "
        f"idempotency keys (must be equal), {tally.replayed} retries answered by replay\n"
        f"  answers: {dict(sorted(tally.answers.items()))}\n"
        f"  requests cut at SIGTERM (sent, not yet read by the server): "
        f"{tally.cut_after_sigterm}, of which applied: {tally.cut_but_applied} (must be 0)\n"
        f"  503 + Retry-After while the database was faulty: {tally.db_fault_503} "
        f"({tally.slow_503} slower than 2 s, must be 0; slowest {tally.slowest_503:.1f} s)\n"
        f"  5xx otherwise: {len(tally.unexpected_5xx)} (must be 0); unhandled exceptions "
        f"logged by the servers: {unhandled or 'none'}"
    )
    for line in tally.unexpected_5xx[:3]:
        print(f"  5xx: {line}")
    for line in tally.failures:
        print(f"  FAILED: {line}")
    print("  result:", "FAILED" if failed(tally) else "ok")


def failed(tally: Tally) -> bool:
    return bool(tally.failures or tally.unexpected_5xx or tally.slow_503)
