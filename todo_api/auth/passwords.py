"""Password hashing with argon2id, off the event loop."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from todo_api.config import Settings


class Passwords:
    """Hash and verify in a bounded thread pool, so a burst of logins never stalls other requests.

    argon2 releases the GIL; at most one hash per core runs at a time, so the event loop always
    keeps a share of the CPU and a storm of logins queues instead of thrashing.
    """

    def __init__(self, settings: Settings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        )
        self._pool = ThreadPoolExecutor(
            max_workers=os.cpu_count() or 2, thread_name_prefix="argon2"
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
