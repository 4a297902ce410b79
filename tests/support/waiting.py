"""Polling until something holds, for what happens in another process or task."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def wait_for(
    check: Callable[[], Awaitable[Any]], seconds: float, what: str, interval: float = 0.05
) -> Any:
    """Poll the coroutine function `check` until it returns something truthy; return that."""
    deadline = time.monotonic() + seconds
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        await asyncio.sleep(interval)


async def seconds_until(check: Callable[[], Awaitable[bool]], limit: float) -> float:
    """How long until `check()` holds (polled every 10 ms); fails after `limit` seconds."""
    started = time.monotonic()
    await wait_for(check, limit, f"a condition (not within {limit} s)", interval=0.01)
    return time.monotonic() - started
