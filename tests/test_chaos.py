"""Fault injection against real `serve` processes (issue 7): PostgreSQL stopped, backends
terminated, row locks held, transactions abandoned; `serve` sent SIGTERM and SIGKILL under load;
two `serve` processes (and two cleanup jobs) on one database.

Each test starts `python -m todo_api serve` in processes of its own (tests/support/chaos.py
has the helpers) and talks to it over loopback HTTP; what is stored is read back with `conn`.
`just chaos` runs the long version: repeated kills under bigger loads.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager

import asyncpg
import httpx
import pytest

from tests.support.accounts import (
    PASSWORD,
    login_on,
    new_user_on,
    register,
    token_refused,
)
from tests.support.chaos import (
    CLEANUP_LINE,
    FaultAt,
    StallingProxy,
    app_backends,
    creations,
    ledger,
    post_creation,
    retry_unacknowledged,
    run_concurrent_cleanups,
    run_creations,
    seed_dead_rows,
    terminate_app_backends,
)
from tests.support.problems import assert_problem
from tests.support.redis import REDIS_URL, random_address, redis_reachable
from tests.support.serving import GRACEFUL_SHUTDOWN_SECONDS, ServeProcess, StartServer, http
from tests.support.todos import TODOS, create_todo
from tests.support.waiting import wait_for
from todo_api.ops.embedded import EmbeddedPostgres

pytestmark = pytest.mark.anyio

ME = "/api/v1/users/me"
# A database error must come back at once, not after a pool or request timeout.
FAIL_FAST_SECONDS = 2.0
ROW_LOCK = "SELECT id FROM todo WHERE id = $1 FOR UPDATE"


async def ready_server(start: StartServer, database_url: str, **overrides: str) -> ServeProcess:
    server = start(database_url, **overrides)
    await server.wait_ready()
    return server


async def timed(request: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    """The response, and how long it took to come."""
    started = time.monotonic()
    response = await request
    return response, time.monotonic() - started


async def no_backends(conn: asyncpg.Connection, where: str = "true") -> bool:
    return not await app_backends(conn, where)


def assert_unavailable(response: httpx.Response) -> None:
    """A 503 problem telling the client when to retry."""
    assert_problem(response, 503)
    assert response.headers["retry-after"].isdigit(), response.headers


@asynccontextmanager
async def holding(database_url: str, statement: str, *args: object) -> AsyncIterator[None]:
    """`statement` run in a transaction of another connection, which then sits idle in it
    (not on `conn`: within a transaction pg_stat_activity is a snapshot, and `conn` watches)."""
    locker = await asyncpg.connect(database_url)
    try:
        await locker.execute("BEGIN")
        await locker.execute(statement, *args)
        yield
    finally:
        await locker.close()  # which ends its transaction


async def waiting_on_a_lock(conn: asyncpg.Connection) -> int:
    """The pid of the app's one backend waiting on a lock (waits for it to get there)."""
    rows = await wait_for(
        lambda: app_backends(conn, "wait_event_type = 'Lock'"),
        seconds=10,
        what="the app's request to wait on the lock",
    )
    assert len(rows) == 1, rows
    pid: int = rows[0]["pid"]
    return pid


# --- 1. database faults ----------------------------------------------------------------------


async def test_while_postgres_is_down_requests_fail_fast_and_closed_and_recover_without_restart(
    own_cluster: EmbeddedPostgres, start_server: StartServer
) -> None:
    server = await ready_server(start_server, own_cluster.url())
    async with http(server.url) as client:
        account = await new_user_on(client)
        todo_id = (await create_todo(account, "t"))["id"]
        assert (await client.get(ME, headers=account.headers)).status_code == 200

        await asyncio.to_thread(own_cluster.stop)

        attempts = [
            ("GET", ME, None),
            ("GET", ME, None),
            ("GET", TODOS, None),
            ("GET", f"{TODOS}/{todo_id}", None),
            ("POST", TODOS, {"title": "while down"}),
            ("GET", ME, None),
        ]
        for method, path, body in attempts:
            response, seconds = await timed(
                client.request(method, path, json=body, headers=account.headers)
            )
            # A valid token is never taken at its word: no session check, no service.
            assert response.status_code != 200, f"{method} {path} served without its session check"
            assert_unavailable(response)
            assert seconds < FAIL_FAST_SECONDS, f"{method} {path} took {seconds:.2f} s"
        login, seconds = await timed(
            client.post("/api/v1/auth/login", json={"login": account.email, "password": "x" * 12})
        )
        assert_unavailable(login)
        assert seconds < FAIL_FAST_SECONDS
        # Without a token the answer needs no database, and is still "who are you?".
        assert (await client.get(ME)).status_code == 401
        assert (await client.get("/health")).status_code == 200
        ready, seconds = await timed(client.get("/ready"))
        assert_unavailable(ready)
        assert seconds < FAIL_FAST_SECONDS + 0.5

        await asyncio.to_thread(own_cluster.start)

        async def me_is_back() -> bool:
            return (await client.get(ME, headers=account.headers)).status_code == 200

        await wait_for(me_is_back, seconds=15, what="GET /users/me to succeed again")
        statuses = [
            (await client.get(path, headers=account.headers)).status_code
            for path in (ME, TODOS, f"{TODOS}/{todo_id}", "/ready", ME)
        ]
        assert statuses == [200] * 5
        assert (await client.get(TODOS, headers=account.headers)).json()["meta"]["count"] == 1
    assert server.alive(), "the app had to be restarted"
    assert server.log().count("Started server process") == 1


async def test_terminated_idle_pooled_connections_are_replaced_on_next_use(
    database_url: str, conn: asyncpg.Connection, start_server: StartServer
) -> None:
    server = await ready_server(start_server, database_url)
    async with http(server.url) as client:
        account = await new_user_on(client)
        # Several requests at once, so the pool holds several connections.
        burst = await asyncio.gather(*(client.get(ME, headers=account.headers) for _ in range(10)))
        assert {response.status_code for response in burst} == {200}
        idle = await wait_for(
            lambda: app_backends(conn, "state = 'idle'"), seconds=5, what="idle pooled backends"
        )

        assert await terminate_app_backends(conn) >= len(idle) >= 1
        pids = ",".join(str(row["pid"]) for row in idle)
        await wait_for(
            lambda: no_backends(conn, f"pid IN ({pids})"),
            seconds=5,
            what="the terminated backends to be gone",
        )

        sequential = [(await client.get(ME, headers=account.headers)) for _ in range(10)]
        concurrent = await asyncio.gather(
            *(client.get(ME, headers=account.headers) for _ in range(10))
        )
        later = [(await client.get(ME, headers=account.headers)) for _ in range(5)]
    statuses = [response.status_code for response in [*sequential, *concurrent]]
    failed = [response for response in [*sequential, *concurrent] if response.status_code != 200]
    assert len(failed) <= 1, statuses
    for response in failed:
        assert_unavailable(response)
    assert [response.status_code for response in later] == [200] * 5


async def test_backends_terminated_under_load_fail_only_their_requests_and_leak_nothing(
    database_url: str, conn: asyncpg.Connection, start_server: StartServer
) -> None:
    server = await ready_server(
        start_server, database_url, DB_POOL_MAX="10", REQUEST_TIMEOUT_SECONDS="3"
    )
    async with http(server.url) as client:
        account = await new_user_on(client)
    items = creations(400, "terminated")
    stop = asyncio.Event()
    load = asyncio.ensure_future(
        # A client waits 5 s at most (more than the request timeout of 3 s).
        run_creations(
            server.url,
            account.access_token,
            items,
            16,
            stop=stop,
            client_timeout=httpx.Timeout(5.0),
        )
    )
    terminated = 0
    try:
        for _ in range(10):
            await asyncio.sleep(0.1)
            terminated += await terminate_app_backends(conn)
    finally:
        stop.set()
        await asyncio.wait_for(load, timeout=30)
    assert terminated >= 5

    answers = [answer for item in items for answer in item.answers]
    statuses = sorted({str(status) for status, _, _ in answers})
    # A request whose connection was killed is told to retry (503 + Retry-After); no other
    # request notices, and nothing is an "unexpected error".
    assert set(statuses) <= {"201", "503"}, statuses
    assert all(retry_after for status, _, retry_after in answers if status == 503)
    # Nothing leaked from the pool: later requests are served at once.
    async with http(server.url) as client:
        for _ in range(10):
            response, seconds = await timed(client.get(ME, headers=account.headers, timeout=5))
            assert response.status_code == 200, (response.status_code, f"{seconds:.1f} s")
    stored = await ledger(conn, account.user_id, items)
    assert stored.acknowledged_found == stored.acknowledged
    assert (stored.half_written, stored.duplicates, stored.mismatched) == ([], [], [])
    server.send(signal.SIGTERM)
    assert await asyncio.to_thread(server.wait, 10) in (0, -signal.SIGTERM)
    assert "Application shutdown complete." in server.log()


async def test_a_backend_killed_mid_request_fails_only_that_request_with_503(
    database_url: str, conn: asyncpg.Connection, start_server: StartServer
) -> None:
    server = await ready_server(start_server, database_url, DB_LOCK_TIMEOUT_MS="20000")
    async with http(server.url) as client:
        account = await new_user_on(client)
        todo_id = (await create_todo(account, "before"))["id"]
        async with holding(database_url, ROW_LOCK, uuid.UUID(todo_id)):
            patch = asyncio.ensure_future(
                client.patch(f"{TODOS}/{todo_id}", json={"title": "after"}, headers=account.headers)
            )
            pid = await waiting_on_a_lock(conn)
            assert await terminate_app_backends(conn, f"pid = {pid}") == 1
            response, seconds = await timed(patch)
        assert seconds < FAIL_FAST_SECONDS
        assert_unavailable(response)

        # Only that request failed: the next ones are served, and the row is intact.
        statuses = [(await client.get(ME, headers=account.headers)).status_code for _ in range(5)]
        assert statuses == [200] * 5
        current = await client.get(f"{TODOS}/{todo_id}", headers=account.headers)
        assert (current.json()["title"], current.json()["version"]) == ("before", 1)
        retried = await client.patch(
            f"{TODOS}/{todo_id}", json={"title": "after"}, headers=account.headers
        )
        assert retried.status_code == 200, retried.text
        assert retried.json()["version"] == 2


async def test_a_backend_killed_mid_transaction_frees_its_pooled_connection(
    database_url: str, conn: asyncpg.Connection, start_server: StartServer
) -> None:
    # One pooled connection: if the killed transaction's connection were never given back,
    # every later request would wait for it until the request timeout.
    server = await ready_server(
        start_server,
        database_url,
        DB_POOL_MIN="1",
        DB_POOL_MAX="1",
        DB_LOCK_TIMEOUT_MS="20000",
        REQUEST_TIMEOUT_SECONDS="5",
    )
    async with http(server.url) as client:
        account = await new_user_on(client)
        item = creations(1, "killed-tx")[0]
        # The create's transaction claims its idempotency key, then waits to insert.
        async with holding(database_url, "LOCK TABLE todo IN SHARE MODE"):
            create = asyncio.ensure_future(post_creation(client, account.access_token, item))
            pid = await waiting_on_a_lock(conn)
            assert await terminate_app_backends(conn, f"pid = {pid}") == 1
            await create
        assert item.status == 503, item.error
        assert item.answers[0][2] is not None, "503 without Retry-After"

        response, seconds = await timed(client.get(ME, headers=account.headers))
        assert response.status_code == 200, f"{response.status_code} after {seconds:.1f} s"
        assert seconds < FAIL_FAST_SECONDS
        # The killed transaction left nothing behind: the retry creates the to-do, once.
        await post_creation(client, account.access_token, item)
        assert (item.status, item.replayed) == (201, False), item.error
        stored = await ledger(conn, account.user_id, [item])
        assert (stored.rows, stored.keys, stored.half_written) == (1, 1, [])

    server.send(signal.SIGTERM)
    assert server.wait(timeout=10) in (0, -signal.SIGTERM), server.log_tail()
    assert "Application shutdown complete." in server.log()


@pytest.mark.parametrize("guard", ["DB_LOCK_TIMEOUT_MS", "DB_STATEMENT_TIMEOUT_MS"])
async def test_a_write_blocked_by_a_row_lock_fails_at_the_timeout_instead_of_hanging(
    database_url: str, start_server: StartServer, guard: str
) -> None:
    # Whichever guard is the shorter one ends the wait: lock_timeout or statement_timeout.
    lock_timeout_ms = 500
    limits = {"DB_LOCK_TIMEOUT_MS": "20000", "DB_STATEMENT_TIMEOUT_MS": "20000"}
    server = await ready_server(
        start_server, database_url, **{**limits, guard: str(lock_timeout_ms)}
    )
    async with http(server.url) as client:
        account = await new_user_on(client)
        todo_id = (await create_todo(account, "before"))["id"]
        # Another transaction holds the row and sits idle.
        async with holding(database_url, ROW_LOCK, uuid.UUID(todo_id)):
            response, seconds = await timed(
                client.patch(f"{TODOS}/{todo_id}", json={"title": "after"}, headers=account.headers)
            )
        assert seconds < lock_timeout_ms / 1000 + FAIL_FAST_SECONDS
        # A clear "try again" (503 + Retry-After) or "conflict" (409), not an unexpected error.
        assert response.status_code in (503, 409), (response.status_code, response.text)
        assert_problem(response, response.status_code)
        if response.status_code == 503:
            assert response.headers["retry-after"].isdigit()

        retried = await client.patch(
            f"{TODOS}/{todo_id}", json={"title": "after"}, headers=account.headers
        )
        assert retried.status_code == 200, retried.text


async def test_a_session_check_stuck_on_the_database_is_cut_at_the_request_timeout(
    database_url: str, start_server: StartServer
) -> None:
    # The database answers, slowly: the session table is locked by a migration, say.
    server = await ready_server(
        start_server,
        database_url,
        REQUEST_TIMEOUT_SECONDS="1",
        DB_LOCK_TIMEOUT_MS="20000",
        DB_STATEMENT_TIMEOUT_MS="20000",
    )
    async with http(server.url) as client:
        account = await new_user_on(client)
        async with holding(database_url, "LOCK TABLE device_session IN ACCESS EXCLUSIVE MODE"):
            try:
                response, seconds = await timed(
                    client.get(ME, headers=account.headers, timeout=httpx.Timeout(5.0))
                )
            except httpx.ReadTimeout:
                pytest.fail("no answer within 5 s although REQUEST_TIMEOUT_SECONDS=1")
        # REQUEST_TIMEOUT_SECONDS bounds the whole request, authentication included.
        assert seconds < 1 + FAIL_FAST_SECONDS, f"{response.status_code} after {seconds:.1f} s"
        assert_unavailable(response)


async def test_an_app_transaction_stalled_between_statements_is_ended_and_its_locks_freed(
    database_url: str, conn: asyncpg.Connection, start_server: StartServer
) -> None:
    idle_timeout_ms = 1000
    proxy = StallingProxy(database_url)
    await proxy.start()
    try:
        server = await ready_server(
            start_server,
            proxy.url,
            DB_POOL_MIN="1",
            DB_POOL_MAX="1",
            DB_IDLE_IN_TRANSACTION_TIMEOUT_MS=str(idle_timeout_ms),
            DB_LOCK_TIMEOUT_MS="20000",
        )
        async with http(server.url) as client:
            account = await new_user_on(client)
            item = creations(1, "stalled")[0]
            async with holding(database_url, "LOCK TABLE todo IN SHARE MODE"):
                create = asyncio.ensure_future(post_creation(client, account.access_token, item))
                pid = await waiting_on_a_lock(conn)
                # Once its insert is answered, the app's next statement never arrives.
                proxy.stall_after_next_sync()
            await wait_for(
                lambda: app_backends(conn, f"pid = {pid} AND state = 'idle in transaction'"),
                seconds=5,
                what="the app's transaction to sit idle",
            )
            idle_since = time.monotonic()
            await wait_for(
                lambda: no_backends(conn, f"pid = {pid}"),
                seconds=idle_timeout_ms / 1000 + 5,
                what="PostgreSQL to end the idle transaction",
            )
            assert time.monotonic() - idle_since < idle_timeout_ms / 1000 + 2
            # Rolled back as a whole: neither the claimed key nor the to-do remain.
            assert await conn.fetchval("SELECT count(*) FROM idempotency_key") == 0
            assert await conn.fetchval("SELECT count(*) FROM todo") == 0

            proxy.resume()
            await asyncio.wait_for(create, timeout=10)
            assert item.status == 503, (item.status, item.error)
            assert item.answers[0][2] is not None, "503 without Retry-After"
            await post_creation(client, account.access_token, item)
            assert (item.status, item.replayed) == (201, False), item.error
            assert (await client.get(ME, headers=account.headers)).status_code == 200
    finally:
        await proxy.close()
    stored = await ledger(conn, account.user_id, [item])
    assert (stored.rows, stored.keys, stored.half_written) == (1, 1, [])


async def test_an_app_frozen_mid_statement_in_a_transaction_does_not_pin_its_locks_forever(
    database_url: str, conn: asyncpg.Connection, start_server: StartServer
) -> None:
    # asyncpg sends Sync only after reading a result, so a frozen client leaves its backend
    # 'active': neither idle_in_transaction_session_timeout nor statement_timeout fires. Only
    # PostgreSQL 17's transaction_timeout (DB_TRANSACTION_TIMEOUT_MS) ends it.
    if conn.get_server_version().major < 17:
        pytest.skip("needs PostgreSQL 17+ (transaction_timeout); this server is older")
    # The app's guards: an idle transaction ends after 0.5 s, a statement after 1 s, any
    # transaction after 1.5 s.
    guard_seconds = 1.5
    server = await ready_server(
        start_server,
        database_url,
        DB_IDLE_IN_TRANSACTION_TIMEOUT_MS="500",
        DB_STATEMENT_TIMEOUT_MS="1000",
        DB_TRANSACTION_TIMEOUT_MS="1500",
    )
    async with http(server.url) as client:
        account = await new_user_on(client)
        item = creations(1, "frozen")[0]
        async with holding(database_url, "LOCK TABLE todo IN SHARE MODE"):
            create = asyncio.ensure_future(post_creation(client, account.access_token, item))
            pid = await waiting_on_a_lock(conn)
            # The app freezes (a stuck worker, a paused VM) while its insert is running...
            server.send(signal.SIGSTOP)
        try:
            # ...the insert goes through, and the frozen app never collects its answer.
            frozen_since = time.monotonic()
            await wait_for(
                lambda: no_backends(conn, f"pid = {pid}"),
                seconds=guard_seconds + 1.5,
                what="PostgreSQL to end the frozen app's transaction (it still holds its locks)",
            )
            assert time.monotonic() - frozen_since < guard_seconds + 1.5
            assert await conn.fetchval("SELECT count(*) FROM idempotency_key") == 0
            assert await conn.fetchval("SELECT count(*) FROM todo") == 0
        finally:
            server.send(signal.SIGCONT)
        await asyncio.wait_for(create, timeout=10)
        assert item.status == 503, (item.status, item.error)


# --- 2. process faults -----------------------------------------------------------------------


async def test_sigterm_answers_every_in_flight_login_exits_cleanly_and_closes_the_pool(
    database_url: str, conn: asyncpg.Connection, start_server: StartServer
) -> None:
    server = await ready_server(
        start_server,
        database_url,
        # Production argon2 (~100-250 ms a hash) so logins are slow-ish for real.
        ARGON2_TIME_COST="3",
        ARGON2_MEMORY_KIB="65536",
        DB_POOL_MAX="30",
        DB_LOCK_TIMEOUT_MS="30000",
    )
    logins = 20
    async with http(server.url, concurrency=logins) as client:
        email = (await register(client))["email"]
        # Hold every login at its session insert, so all 20 are surely in flight at SIGTERM.
        async with holding(database_url, "LOCK TABLE device_session IN SHARE MODE"):
            requests = [
                asyncio.ensure_future(
                    client.post("/api/v1/auth/login", json={"login": email, "password": PASSWORD})
                )
                for _ in range(logins)
            ]

            async def all_waiting() -> bool:
                return len(await app_backends(conn, "wait_event_type = 'Lock'")) == logins

            await wait_for(all_waiting, seconds=30, what="every login to be in flight")
            assert not any(request.done() for request in requests)

            server.send(signal.SIGTERM)

            # It stops taking connections but keeps serving the ones in flight.
            async def refused() -> bool:
                async with httpx.AsyncClient(timeout=1) as probe:
                    try:
                        await probe.get(f"{server.url}/health")
                    except httpx.ConnectError:
                        return True
                    except httpx.RemoteProtocolError:
                        # Accepted just before the listener closed, then dropped unanswered by
                        # the shutdown: not refused yet, ask again.
                        return False
                return False

            await wait_for(refused, seconds=5, what="the listening socket to close")
            assert server.alive()
        responses = await asyncio.wait_for(asyncio.gather(*requests), timeout=60)

    assert [response.status_code for response in responses] == [200] * logins
    assert all(response.json()["access_token"] for response in responses)
    code = await asyncio.to_thread(server.wait, GRACEFUL_SHUTDOWN_SECONDS)
    log = server.log()
    # uvicorn re-raises the SIGTERM it handled once it has shut down, so -SIGTERM is a clean
    # exit too; the log says the lifespan (which closes the pool) completed.
    assert code in (0, -signal.SIGTERM), log[-2000:]
    assert "Application shutdown complete." in log
    assert "Traceback" not in log
    await wait_for(lambda: no_backends(conn), seconds=5, what="the app's backends to be gone")
    sessions = await conn.fetchval("SELECT count(*) FROM device_session")
    assert sessions == logins


async def test_sigkill_during_acknowledged_creations_loses_none_and_half_writes_none(
    database_url: str, conn: asyncpg.Connection, start_server: StartServer
) -> None:
    server = await ready_server(start_server, database_url)
    async with http(server.url) as client:
        account = await new_user_on(client)
    items = creations(300, "sigkill")
    fault = FaultAt(threshold=100, fire=server.kill_group)
    await run_creations(server.url, account.access_token, items, 16, fault, fault.stop)
    assert fault.stop.is_set()
    assert await asyncio.to_thread(server.wait, 10) == -signal.SIGKILL
    statuses = {answer[0] for item in items for answer in item.answers}
    assert not {status for status in statuses if isinstance(status, int) and status >= 500}

    # Every acknowledged creation is there, whole; whatever else was written is whole too.
    before = await ledger(conn, account.user_id, items)
    assert before.acknowledged >= 100
    assert before.acknowledged_found == before.acknowledged
    assert (before.half_written, before.duplicates, before.mismatched) == ([], [], [])

    # After a restart, clients retry what got no answer: each key is applied exactly once.
    restarted = await ready_server(start_server, database_url)
    await retry_unacknowledged(restarted.url, account.access_token, items)
    after = await ledger(conn, account.user_id, items)
    assert after.acknowledged == len(items)
    assert (after.rows, after.keys) == (len(items), len(items))
    assert (after.half_written, after.duplicates, after.mismatched) == ([], [], [])
    # A retry of an acknowledged creation is answered from its key, with the same to-do.
    acknowledged = [item for item in items if item.acknowledged and not item.replayed][:5]
    ids = [item.todo_id for item in acknowledged]
    async with http(restarted.url) as client:
        for item in acknowledged:
            await post_creation(client, account.access_token, item)
    assert [item.todo_id for item in acknowledged] == ids
    assert all(item.replayed for item in acknowledged)


# --- 3. many processes -----------------------------------------------------------------------


def shared_env() -> tuple[dict[str, str], dict[str, str]]:
    """(server env, request headers) for servers that share Redis when it is reachable, each
    test with its own client address so its counters never meet another run's."""
    if not redis_reachable():
        return {}, {}
    return (
        {"REDIS_URL": REDIS_URL, "TRUSTED_PROXIES": "127.0.0.1"},
        {"X-Forwarded-For": random_address()},
    )


async def test_a_session_revoked_through_one_process_is_refused_by_the_other_within_a_second(
    database_url: str, start_server: StartServer
) -> None:
    env, headers = shared_env()
    first = start_server(database_url, **env)
    second = start_server(database_url, **env)
    await asyncio.gather(first.wait_ready(), second.wait_ready())
    async with http(first.url) as one, http(second.url) as two:
        email = (await register(one, headers=headers))["email"]
        phone = await login_on(one, email, headers=headers)
        laptop = await login_on(two, email, headers=headers)
        for client in (one, two):
            for device in (phone, laptop):
                assert (await client.get(ME, headers=device.headers)).status_code == 200

        revoked = await one.delete(
            f"/api/v1/auth/sessions/{phone.session_id}", headers={**headers, **laptop.headers}
        )
        assert revoked.status_code == 204, revoked.text
        # The process that revoked refuses at once; the other as soon as PostgreSQL's NOTIFY
        # reaches its live-session cache (milliseconds; the promise is within a second).
        assert (await one.get(ME, headers=phone.headers)).status_code == 401
        await wait_for(
            lambda: token_refused(two, phone),
            seconds=1.0,
            what="the other process to refuse",
            interval=0.01,
        )
        assert (await two.get(ME, headers=laptop.headers)).status_code == 200

        ended = await two.post("/api/v1/auth/logout-all", headers={**headers, **laptop.headers})
        assert ended.status_code == 204, ended.text
        assert (await two.get(ME, headers=laptop.headers)).status_code == 401
        await wait_for(
            lambda: token_refused(one, laptop),
            seconds=1.0,
            what="the other process to refuse",
            interval=0.01,
        )


@pytest.mark.skipif(
    not redis_reachable(), reason="no Redis on 127.0.0.1:6379: rate-limit counters are per process"
)
async def test_the_login_rate_limit_counts_across_processes_through_redis(
    database_url: str, start_server: StartServer
) -> None:
    env = {"REDIS_URL": REDIS_URL, "TRUSTED_PROXIES": "127.0.0.1", "RATE_LIMIT_LOGIN": "4/minute"}
    first = start_server(database_url, **env)
    second = start_server(database_url, **env)
    await asyncio.gather(first.wait_ready(), second.wait_ready())
    address = random_address()
    async with http(first.url) as one, http(second.url) as two:
        email = (await register(one, headers={"X-Forwarded-For": random_address()}))["email"]

        async def log_in_from(client: httpx.AsyncClient, address: str) -> httpx.Response:
            return await client.post(
                "/api/v1/auth/login",
                json={"login": email, "password": PASSWORD},
                headers={"X-Forwarded-For": address},
            )

        statuses = [(await log_in_from(c, address)).status_code for c in (one, two, one, two)]
        assert statuses == [200] * 4
        for client in (one, two):
            blocked = await log_in_from(client, address)
            assert_problem(blocked, 429)
            assert int(blocked.headers["retry-after"]) >= 1
        # Counted per client address: another client is not held back.
        assert (await log_in_from(two, random_address())).status_code == 200


async def test_cleanup_run_by_two_processes_at_once_does_the_work_once_without_errors(
    database_url: str, conn: asyncpg.Connection
) -> None:
    events, sessions = 20_000, 500
    await seed_dead_rows(conn, events, sessions)

    outcome = await asyncio.to_thread(run_concurrent_cleanups, database_url, 2)

    assert outcome.returncodes == [0, 0], outcome.outputs
    assert not any("Traceback" in output for output in outcome.outputs), outcome.outputs
    # The advisory lock: one process did it all; the other found it taken, or nothing left.
    assert (outcome.events_deleted, outcome.sessions_deleted) == (events, sessions)
    worked = [
        output
        for output in outcome.outputs
        if CLEANUP_LINE.search(output) and "deleted 0 sessions" not in output
    ]
    assert len(worked) == 1, outcome.outputs
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM auth_event WHERE created_at < now() - interval '100 days'"
        )
        == 0
    )
    assert await conn.fetchval("SELECT count(*) FROM device_session") == 0
