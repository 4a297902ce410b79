"""A small asyncio load generator for fixed-rate (open-loop) latency.

Requests are scheduled at a constant rate whatever the server does, and each latency is measured
from the request's scheduled start, so a stall shows up in the percentiles instead of slowing
the generator down (no coordinated omission). HTTP/1.1 keep-alive over raw asyncio streams,
a pool of connections that grows when all are busy: cheap enough on the client side to leave
the CPU to the servers.
"""

from __future__ import annotations

import asyncio
import collections
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
_SET_COOKIE = re.compile(rb"\r\nset-cookie:\s*([^\r]+)", re.IGNORECASE)


@dataclass
class Response:
    status: int
    head: bytes
    body: bytes

    def cookies(self) -> dict[str, str]:
        jar = {}
        for raw in _SET_COOKIE.findall(self.head):
            name, _, rest = raw.decode("latin-1").partition("=")
            jar[name.strip()] = rest.split(";", 1)[0]
        return jar


class Client:
    """Keep-alive connections to one host:port, at most `limit` open at once."""

    def __init__(self, base_url: str, limit: int = 512) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        # Most recently used first (pop/append on the right).
        self.idle: collections.deque[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            collections.deque()
        )
        self.slots = asyncio.Semaphore(limit)
        self.reconnects = 0

    async def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> Response:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body or method in ("POST", "PATCH", "PUT"):
            lines.append(f"Content-Length: {len(body)}")
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        async with self.slots:
            reused = bool(self.idle)
            while True:
                if reused:
                    reader, writer = self.idle.pop()
                else:
                    reader, writer = await asyncio.open_connection(self.host, self.port)
                writer.write(raw)
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError) as exc:
                    writer.close()
                    # The server closed an idle keep-alive connection just as we reused it
                    # (nothing came back): send again on a new one, as HTTP clients do.
                    if reused and not getattr(exc, "partial", b""):
                        self.reconnects += 1
                        reused = bool(self.idle)
                        continue
                    raise
                break
            try:
                match = _CONTENT_LENGTH.search(head)
                length = int(match.group(1)) if match else 0
                payload = await reader.readexactly(length) if length else b""
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()
                raise
            self.idle.append((reader, writer))
            return Response(int(head[9:12]), head, payload)

    async def close(self) -> None:
        while self.idle:
            _, writer = self.idle.pop()
            writer.close()


@dataclass
class Recorded:
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    by_kind: dict[str, list[float]] = field(default_factory=dict)
    lag_ms: float = 0.0  # how far the generator itself fell behind its schedule, at worst
    failures: collections.Counter[str] = field(default_factory=collections.Counter)


async def fixed_rate(
    rate: float,
    seconds: float,
    send: Callable[[int], Awaitable[tuple[str, bool]]],
) -> Recorded:
    """Call `send(i)` at `rate` per second for `seconds`; `send` returns (kind, ok)."""
    recorded = Recorded()
    total = int(rate * seconds)
    start = time.perf_counter() + 0.05
    tasks = []

    async def one(i: int, scheduled: float) -> None:
        try:
            kind, ok = await send(i)
        except (OSError, asyncio.IncompleteReadError) as exc:
            kind, ok = f"error {type(exc).__name__}", False
        elapsed = (time.perf_counter() - scheduled) * 1000
        recorded.latencies_ms.append(elapsed)
        recorded.by_kind.setdefault(kind, []).append(elapsed)
        if not ok:
            recorded.errors += 1
            recorded.failures[kind] += 1

    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            recorded.lag_ms = max(recorded.lag_ms, -delay * 1000)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    await asyncio.gather(*tasks)
    return recorded


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
