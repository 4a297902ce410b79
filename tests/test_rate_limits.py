"""Rate limits: per client IP on login/register/token, per session on refresh, per account on
failed logins; counters in memory, or in Redis shared by every process."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import asyncpg
import httpx
import pytest

from tests.support.accounts import PASSWORD, login, refresh_with, register
from tests.support.problems import assert_problem
from tests.support.redis import REDIS_URL, random_address, redis_reachable

pytestmark = pytest.mark.anyio

ClientFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


def assert_rate_limited(response: httpx.Response) -> None:
    assert_problem(response, 429)
    assert int(response.headers["retry-after"]) >= 1


async def test_login_is_limited_per_client_ip(client_with: ClientFactory) -> None:
    async with client_with(RATE_LIMIT_LOGIN="3/minute") as client:
        user = await register(client)
        attempts = [
            await client.post(
                "/api/v1/auth/login", json={"login": user["email"], "password": "wrong password"}
            )
            for _ in range(3)
        ]
        assert [r.status_code for r in attempts] == [401, 401, 401]
        # Even the right password waits now: the limit is on the address, not the outcome.
        blocked = await client.post(
            "/api/v1/auth/login", json={"login": user["email"], "password": PASSWORD}
        )
        assert_rate_limited(blocked)


async def test_register_and_token_are_limited_per_client_ip(client_with: ClientFactory) -> None:
    async with client_with(RATE_LIMIT_REGISTER="2/minute", RATE_LIMIT_TOKEN="1/minute") as client:
        await register(client)
        await register(client)
        blocked = await client.post(
            "/api/v1/auth/register", json={"email": "late@example.com", "password": PASSWORD}
        )
        assert_rate_limited(blocked)

        form = {"username": "nobody@example.com", "password": "whatever1"}
        assert (await client.post("/api/v1/auth/token", data=form)).status_code == 401
        assert_rate_limited(await client.post("/api/v1/auth/token", data=form))


async def test_refresh_is_limited_per_session(client_with: ClientFactory) -> None:
    async with client_with(RATE_LIMIT_REFRESH="2/minute") as client:
        user = await register(client)
        phone = await login(client, user["email"])
        laptop = await login(client, user["email"])
        assert (await phone.client.post("/api/v1/auth/refresh")).status_code == 200
        assert (await phone.client.post("/api/v1/auth/refresh")).status_code == 200
        assert_rate_limited(await phone.client.post("/api/v1/auth/refresh"))
        # Another device of the same user (same IP) has its own budget.
        assert (await laptop.client.post("/api/v1/auth/refresh")).status_code == 200


async def test_failed_logins_lock_the_account_for_a_while(
    client_with: ClientFactory, conn: asyncpg.Connection
) -> None:
    async with client_with(RATE_LIMIT_LOGIN_FAILURES="3/hour") as client:
        victim = await register(client)
        bystander = await register(client)
        for _ in range(3):
            wrong = await client.post(
                "/api/v1/auth/login", json={"login": victim["email"], "password": "guess guess"}
            )
            assert wrong.status_code == 401
        locked = await client.post(
            "/api/v1/auth/login", json={"login": victim["email"], "password": PASSWORD}
        )
        assert_rate_limited(locked)
        assert int(locked.headers["retry-after"]) == 3600
        assert "set-cookie" not in locked.headers
        assert (await login(client, bystander["email"])).session_id
    events = await conn.fetch(
        "SELECT type, detail FROM auth_event WHERE user_id = $1 AND type = 'rate_limited'",
        uuid.UUID(victim["id"]),
    )
    assert len(events) == 1
    sessions = await conn.fetchval(
        'SELECT count(*) FROM device_session WHERE "user" = $1', uuid.UUID(victim["id"])
    )
    assert sessions == 0


@pytest.mark.skipif(not redis_reachable(), reason="no Redis on 127.0.0.1:6379 to share counters")
async def test_redis_counters_are_shared_by_every_app_process(client_with: ClientFactory) -> None:
    # Two app instances one after the other stand for two processes: with an in-memory store
    # the second would start from zero. A per-test client address keeps runs apart in Redis.
    address = random_address()
    env = {
        "REDIS_URL": REDIS_URL,
        "RATE_LIMIT_REGISTER": "2/minute",
        "TRUSTED_PROXIES": "127.0.0.1",
    }
    forwarded = {"X-Forwarded-For": address}
    body = {"password": PASSWORD}
    async with client_with(**env) as first:
        for _ in range(2):
            email = f"{uuid.uuid4().hex}@example.com"
            response = await first.post(
                "/api/v1/auth/register", json={**body, "email": email}, headers=forwarded
            )
            assert response.status_code == 201
    async with client_with(**env) as second:
        response = await second.post(
            "/api/v1/auth/register",
            json={**body, "email": f"{uuid.uuid4().hex}@example.com"},
            headers=forwarded,
        )
        assert_rate_limited(response)
        other = await second.post(
            "/api/v1/auth/register",
            json={**body, "email": f"{uuid.uuid4().hex}@example.com"},
            headers={"X-Forwarded-For": random_address()},
        )
        assert other.status_code == 201


async def test_memory_counters_start_from_zero_in_a_new_process(
    client_with: ClientFactory,
) -> None:
    async with client_with(RATE_LIMIT_REGISTER="1/minute") as first:
        await register(first)
    async with client_with(RATE_LIMIT_REGISTER="1/minute") as second:
        await register(second)


async def test_a_refresh_over_the_limit_does_not_consume_the_token(
    client_with: ClientFactory, conn: asyncpg.Connection
) -> None:
    async with client_with(RATE_LIMIT_REFRESH="1/minute") as client:
        user = await register(client)
        device = await login(client, user["email"])
        rotated = await refresh_with(client, device.refresh_token)
        assert rotated.status_code == 200
        assert_rate_limited(await refresh_with(client, device.refresh_token))
    counter = await conn.fetchval(
        "SELECT refresh_counter FROM device_session WHERE id = $1", uuid.UUID(device.session_id)
    )
    assert counter == 1
