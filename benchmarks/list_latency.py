"""Is listing flat in the size of a user's list? p50/p99 of GET /api/v1/todos at 100 and 100,000.

Starts a throwaway embedded PostgreSQL, seeds two users (100 and 100,000 to-dos, straight in
SQL), serves the app with `serve` settings on loopback, and times, for each user, interleaved
(A B A B ...): the first page, a deep page (a cursor half-way through the list), a filtered page
(`completed=false&sort=-priority`) and a delta sync with a recent token. Prints a table and the
ratios 100k/100; the target is p50 at 100k within 1.5x of p50 at 100.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time

import asyncpg
import httpx

from benchmarks.stack import serving

PASSWORD = "correct horse battery staple"
SIZES = (100, 100_000)
ROUNDS = 5
PER_ROUND = 100


async def seed(url: str, base_url: str) -> dict[int, str]:
    """One user per size, each with that many to-dos; returns size -> access token."""
    tokens: dict[int, str] = {}
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        for size in SIZES:
            email = f"list-{size}@example.com"
            response = await client.post(
                "/api/v1/auth/register", json={"email": email, "password": PASSWORD}
            )
            assert response.status_code == 201, response.text
            user_id = response.json()["id"]
            connection = await asyncpg.connect(url)
            try:
                await connection.execute(
                    """
                    INSERT INTO todo (id, owner, title, notes, is_completed, priority, position,
                                      due_at, created_at, updated_at, version)
                    SELECT gen_random_uuid(), $1, 'todo ' || n, 'notes ' || n, n % 3 = 0, n % 4,
                           n, CASE WHEN n % 2 = 0 THEN now() + n * interval '1 minute' END,
                           now() - (($2 - n) * interval '1 second'), now(), 1
                    FROM generate_series(1, $2) AS n
                    """,
                    user_id,
                    size,
                )
                await connection.execute("ANALYZE todo")
            finally:
                await connection.close()
            login = await client.post(
                "/api/v1/auth/login", json={"login": email, "password": PASSWORD}
            )
            tokens[size] = login.json()["access_token"]
    return tokens


async def deep_cursor(client: httpx.AsyncClient, size: int) -> str | None:
    """A cursor about half-way through the list (walking with the largest page)."""
    cursor = None
    for _ in range(max(1, size // 200)):
        params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        cursor = (await client.get("/api/v1/todos", params=params)).json()["meta"]["next_cursor"]
    return cursor


async def timed(client: httpx.AsyncClient, params: dict[str, str], path: str) -> float:
    started = time.perf_counter()
    response = await client.get(path, params=params)
    elapsed = (time.perf_counter() - started) * 1000
    assert response.status_code == 200, response.text
    return elapsed


async def measure(url: str, base_url: str) -> dict[str, dict[int, list[float]]]:
    tokens = await seed(url, base_url)
    clients = {
        size: httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        for size, token in tokens.items()
    }
    scenarios: dict[str, tuple[str, dict[int, dict[str, str]]]] = {}
    deep = {size: await deep_cursor(clients[size], size) for size in SIZES}
    sync_tokens = {}
    for size in SIZES:
        sync = await clients[size].get("/api/v1/todos/changes", params={"limit": 500})
        while sync.json()["meta"]["next_cursor"]:
            sync = await clients[size].get(
                "/api/v1/todos/changes",
                params={"limit": 500, "cursor": sync.json()["meta"]["next_cursor"]},
            )
        await clients[size].patch(
            f"/api/v1/todos/{sync.json()['data'][-1]['id']}", json={"title": "changed"}
        )
        sync_tokens[size] = sync.json()["sync_token"]
    scenarios["first page"] = ("/api/v1/todos", {size: {} for size in SIZES})
    scenarios["deep page"] = (
        "/api/v1/todos",
        {size: {"cursor": deep[size]} if deep[size] else {} for size in SIZES},
    )
    scenarios["filtered"] = (
        "/api/v1/todos",
        {size: {"completed": "false", "sort": "-priority"} for size in SIZES},
    )
    scenarios["delta sync"] = (
        "/api/v1/todos/changes",
        {size: {"since": sync_tokens[size]} for size in SIZES},
    )
    results: dict[str, dict[int, list[float]]] = {
        name: {s: [] for s in SIZES} for name in scenarios
    }
    for name, (path, params) in scenarios.items():
        for size in SIZES:  # warm-up
            for _ in range(20):
                await timed(clients[size], params[size], path)
        for _ in range(ROUNDS):
            for size in SIZES:
                for _ in range(PER_ROUND):
                    results[name][size].append(await timed(clients[size], params[size], path))
    for client in clients.values():
        await client.aclose()
    return results


def main() -> None:
    with serving(LOG_LEVEL="WARNING") as (base_url, database_url):
        results = asyncio.run(measure(database_url, base_url))
    print(f"cores: {os.cpu_count()}; {ROUNDS} interleaved rounds x {PER_ROUND} requests")
    print("| scenario | p50 @100 | p50 @100k | p99 @100 | p99 @100k | p50 ratio |")
    print("|---|---|---|---|---|---|")
    for name, by_size in results.items():
        small, large = by_size[SIZES[0]], by_size[SIZES[1]]
        p50s, p50l = statistics.median(small), statistics.median(large)
        p99s = sorted(small)[int(0.99 * len(small))]
        p99l = sorted(large)[int(0.99 * len(large))]
        print(
            f"| {name} | {p50s:.2f} ms | {p50l:.2f} ms | {p99s:.2f} ms | {p99l:.2f} ms "
            f"| {p50l / p50s:.2f} |"
        )


if __name__ == "__main__":
    main()
