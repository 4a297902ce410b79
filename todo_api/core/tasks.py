"""Background tasks that live as long as the app (its lifespan)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any


@contextlib.asynccontextmanager
async def running(work: Coroutine[Any, Any, None], name: str) -> AsyncIterator[None]:
    """Run `work` as a task for the duration of the block (the app's lifespan); cancel it and
    wait for it to finish on the way out."""
    task = asyncio.create_task(work, name=name)
    try:
        yield
    finally:
        task.cancel()
        # Asked again while it runs on: a cancellation can be swallowed below it (Python 3.11's
        # asyncio.wait_for does, in libraries too), and shutdown must not hang on that.
        while not (await asyncio.wait({task}, timeout=1.0))[0]:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
