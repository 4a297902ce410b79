"""Which device sessions are live: a per-process cache kept true by PostgreSQL LISTEN/NOTIFY.

Every authenticated request must know that its access token's session is still live and its
account active. Asking PostgreSQL each time costs a round trip and a pooled connection per
request; this cache answers from memory instead, and stays exactly as strict:

- Triggers (migration `todo_api_2026_11_24t04_05_00_000000`) `NOTIFY todo_api_sessions` whenever a session is revoked,
  deleted or re-dated, and whenever an account's role or `is_active` changes or it is deleted,
  whoever writes it (this app, another process, the admin, SQL). Every process LISTENs on its own
  connection and drops the entries named; a revocation reaches every process in milliseconds.
- This process's own revocations also drop its entries at once (`sessions_changed()`), so a
  client that was told "logged out" is never let in by this process again, not even for the
  milliseconds the notification takes.
- It fails closed: the cache is used only while the listener is connected and answering (a
  ping every second). When the listener connection drops, the cache is emptied and every request
  asks PostgreSQL again until the listener is back (and has emptied the cache once more: it may
  have missed notifications meanwhile).
- An answer read from PostgreSQL is cached only if no notification arrived while it was being
  read (a generation counter), so a revocation racing the read is never overwritten by it.
- Entries also expire with their session, and after `ENTRY_SECONDS` regardless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg

from todo_api.auth import queries
from todo_api.core.tasks import running

CHANNEL = "todo_api_sessions"
ENTRY_SECONDS = 60.0
MAX_ENTRIES = 20_000
PING_SECONDS = 1.0
FIRST_CONNECT_SECONDS = 5.0
RECONNECT_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)

logger = logging.getLogger(__name__)
_caches: weakref.WeakSet[LiveSessions] = weakref.WeakSet()


def sessions_changed() -> None:
    """Forget every cached session of this process: call after committing a revocation or a
    change of role, activity or existence of an account (other processes hear of it by NOTIFY)."""
    for cache in list(_caches):
        cache.forget_all()


@dataclass(frozen=True, slots=True)
class _Entry:
    user_id: uuid.UUID
    role: str
    expires_at: float  # the session's absolute expiry (epoch seconds)
    stale_at: float  # monotonic


class LiveSessions:
    """The live sessions one app (in one process) has recently seen."""

    def __init__(self, reconnect_seconds: tuple[float, ...] = RECONNECT_SECONDS) -> None:
        self._reconnect_seconds = reconnect_seconds
        self._entries: dict[uuid.UUID, _Entry] = {}
        self._generation = 0
        self._first_attempt = asyncio.Event()
        # True only while the listener is connected, listening and answering pings.
        self.listening = False
        _caches.add(self)

    async def role_of(
        self, user_id: uuid.UUID, session_id: uuid.UUID, *, fresh: bool = False
    ) -> str | None:
        """The account's role if `session_id` is a live session of `user_id`, else None;
        `fresh` reads it from the database whatever is cached (and caches that)."""
        entry = None if fresh else self._entries.get(session_id)
        if entry is not None:
            if (
                self.listening
                and entry.user_id == user_id
                and entry.stale_at > time.monotonic()
                and entry.expires_at > time.time()
            ):
                return entry.role
            self._entries.pop(session_id, None)
        generation = self._generation
        live = await queries.live_session(session_id, user_id)
        if live is None:
            return None
        if self.listening and generation == self._generation:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.pop(next(iter(self._entries)))
            self._entries[session_id] = _Entry(
                user_id, live.role, live.expires_at.timestamp(), time.monotonic() + ENTRY_SECONDS
            )
        return live.role

    def forget_all(self) -> None:
        self._generation += 1
        self._entries.clear()

    def _notified(self, _: Any, __: int, ___: str, payload: str) -> None:
        """A trigger's payload: `s:<session id>` or `u:<user id>`."""
        self._generation += 1
        kind, _, ident = payload.partition(":")
        try:
            target = uuid.UUID(ident)
        except ValueError:
            self._entries.clear()
            return
        if kind == "s":
            self._entries.pop(target, None)
        else:
            for session_id in [s for s, e in self._entries.items() if e.user_id == target]:
                self._entries.pop(session_id, None)

    @contextlib.asynccontextmanager
    async def listener(self, database_url: str) -> AsyncIterator[None]:
        """Keep a LISTEN connection for the app's lifetime (reconnecting as needed)."""
        try:
            async with running(self._listen(database_url), "live-sessions-listener"):
                # Start-up waits for the first connection attempt: the app starts with the cache
                # on, and a short-lived app is never shut down in the middle of that connect
                # (asyncpg then leaves an "unexpected connection_lost()" error behind).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(FIRST_CONNECT_SECONDS):
                        await self._first_attempt.wait()
                yield
        finally:
            self.listening = False
            self.forget_all()

    async def _listen(self, database_url: str) -> None:
        failures = 0
        while True:
            connection: asyncpg.Connection | None = None
            try:
                connection = await asyncpg.connect(
                    database_url,
                    timeout=5,
                    server_settings={"application_name": "todo-api-sessions"},
                )
                lost = asyncio.Event()
                connection.add_termination_listener(lambda _, event=lost: event.set())
                await connection.add_listener(CHANNEL, self._notified)
                # Notifications sent while nobody listened are lost: start from nothing.
                self.forget_all()
                self.listening = True
                self._first_attempt.set()
                if failures:
                    logger.info("session listener reconnected")
                failures = 0
                # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a
                # cancellation that lands as its inner wait ends, and then the app's shutdown
                # (which cancels this task and waits for it) hangs.
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(PING_SECONDS):
                            await lost.wait()
                    if not lost.is_set():
                        async with asyncio.timeout(PING_SECONDS):
                            await connection.fetchval("SELECT 1")
                raise ConnectionResetError("the listener's connection was closed")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if failures == 0:
                    logger.warning(
                        "session listener lost (%s); checking every session in the database",
                        type(exc).__name__,
                    )
            finally:
                self._first_attempt.set()
                self.listening = False
                self.forget_all()
                if connection is not None:
                    connection.terminate()
            delays = self._reconnect_seconds
            await asyncio.sleep(delays[min(failures, len(delays) - 1)])
            failures += 1
