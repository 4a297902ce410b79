"""Password hashing with argon2id, off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from todo_api.core.config import Settings

# Hashing runs at the lowest scheduling priority: a login storm then takes
# the CPU the event loop does not need, instead of an equal share of it.
HASH_THREAD_NICENESS = 19


def _lower_thread_priority() -> None:
    """Let the event loop's thread win the CPU over hashing threads (Linux: per-thread nice)."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASH_THREAD_NICENESS)


class Passwords:
    """Hash and verify in a bounded thread pool, so a burst of logins never stalls other requests.

    argon2 releases the GIL; at most one hash per core runs at a time (a storm queues instead of
    thrashing), in threads the scheduler ranks below the event loop.
    """

    def __init__(self, settings: Settings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        )
        self._pool = ThreadPoolExecutor(
            max_workers=os.cpu_count() or 2,
            thread_name_prefix="argon2",
            initializer=_lower_thread_priority,
        )
        # Verified against when the account does not exist, so both cases cost one hash.
        self._dummy_hash = self._hasher.hash(os.urandom(16).hex())

    async def hash(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, self._hasher.hash, password
        )

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """True if `password` matches; with no stored hash, spends the same time and says False."""
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, self._verify, stored_hash, password
        )

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _verify(self, stored_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash or self._dummy_hash, password) and bool(
                stored_hash
            )
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
