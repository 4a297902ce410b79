"""Password hashing with argon2id, off the event loop; hashes imported from other backends
(bcrypt, passlib's pbkdf2-sha256) verify too, and are replaced by argon2id at the next login."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import bcrypt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from todo_api.core.config import Settings

ARGON2ID_PREFIX = "$argon2id$"
BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
PBKDF2_SHA256_PREFIX = "$pbkdf2-sha256$"
# bcrypt reads at most 72 bytes of a password (passlib and older bcrypt releases cut the rest).
BCRYPT_MAX_BYTES = 72
# passlib's default is 29,000; an imported hash claiming far more would stall a hashing thread.
PBKDF2_MAX_ROUNDS = 10_000_000


def is_known_hash(stored_hash: str) -> bool:
    """Whether `stored_hash` is in a format `Passwords.verify` can check."""
    return stored_hash.startswith((ARGON2ID_PREFIX, PBKDF2_SHA256_PREFIX, *BCRYPT_PREFIXES))


def _verify_imported(stored_hash: str, password: str) -> bool:
    """Check a hash imported from another backend. Hand-written for passlib's pbkdf2-sha256
    (hashlib does the work; passlib itself is unmaintained) and through `bcrypt` for bcrypt."""
    secret = password.encode()
    if stored_hash.startswith(BCRYPT_PREFIXES):
        try:
            return bcrypt.checkpw(secret[:BCRYPT_MAX_BYTES], stored_hash.encode())
        except ValueError:  # a malformed hash
            return False
    if stored_hash.startswith(PBKDF2_SHA256_PREFIX):
        # $pbkdf2-sha256$<rounds>$<salt>$<checksum>, in passlib's base64 ("." for "+", no "=").
        try:
            _, _, rounds, salt, checksum = stored_hash.split("$")
            salt_bytes, expected = (
                base64.b64decode(part.replace(".", "+") + "=" * (-len(part) % 4))
                for part in (salt, checksum)
            )
            if not 0 < int(rounds) <= PBKDF2_MAX_ROUNDS:
                return False
            derived = hashlib.pbkdf2_hmac("sha256", secret, salt_bytes, int(rounds), len(expected))
        except (ValueError, TypeError):
            return False
        return bool(expected) and hmac.compare_digest(derived, expected)
    return False


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
        """An imported format, or argon2id with other parameters than ours."""
        if not stored_hash.startswith(ARGON2ID_PREFIX):
            return True
        return self._hasher.check_needs_rehash(stored_hash)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _verify(self, stored_hash: str | None, password: str) -> bool:
        if stored_hash is not None and not stored_hash.startswith(ARGON2ID_PREFIX):
            return _verify_imported(stored_hash, password)
        try:
            return self._hasher.verify(stored_hash or self._dummy_hash, password) and bool(
                stored_hash
            )
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
