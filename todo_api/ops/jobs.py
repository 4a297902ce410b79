"""Housekeeping, in the app on an interval and as `just cleanup`: each feature purges its own
dead rows (sessions, audit events, to-do tombstones, idempotency keys; the admin its staff
sessions); this module only runs them together, once at a time across every process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

from todo_api.auth.audit import purge_events
from todo_api.auth.sessions import purge_dead_sessions
from todo_api.core import db
from todo_api.core.clock import now
from todo_api.core.config import Settings
from todo_api.core.tasks import running
from todo_api.ops.admin import purge_staff_sessions
from todo_api.todos.service import purge_idempotency_keys, purge_tombstones

logger = logging.getLogger(__name__)

# The advisory lock that makes one cleanup at a time across every process on the database.
CLEANUP_LOCK = "todo_api:cleanup"
CLEANUP_LOCK_ID = db.lock_id(CLEANUP_LOCK)


@dataclass(frozen=True, slots=True)
class CleanupResult:
    ran: bool
    sessions_deleted: int = 0
    todos_purged: int = 0
    idempotency_keys_deleted: int = 0
    auth_events_deleted: int = 0
    staff_sessions_deleted: int = 0


async def cleanup(settings: Settings) -> CleanupResult:
    """One round of purging, in one transaction; skipped if another process is cleaning."""
    moment = now()
    async with db.transaction():
        if not await db.try_advisory_xact_lock(CLEANUP_LOCK):
            return CleanupResult(ran=False)
        result = CleanupResult(
            ran=True,
            sessions_deleted=await purge_dead_sessions(settings, moment),
            todos_purged=await purge_tombstones(timedelta(days=settings.tombstone_retention_days)),
            auth_events_deleted=await purge_events(
                moment - timedelta(days=settings.auth_event_retention_days)
            ),
            staff_sessions_deleted=await purge_staff_sessions(),
            idempotency_keys_deleted=await purge_idempotency_keys(),
        )
    return result


@contextlib.asynccontextmanager
async def periodic_cleanup(settings: Settings) -> AsyncIterator[None]:
    """Run `cleanup` every CLEANUP_INTERVAL_SECONDS while the app is up (0 turns it off)."""
    if settings.cleanup_interval_seconds <= 0:
        yield
        return

    async def loop() -> None:
        while True:
            await asyncio.sleep(settings.cleanup_interval_seconds)
            try:
                result = await cleanup(settings)
                if result.ran:
                    logger.info("cleanup: %s", result)
            except Exception:  # a failed round must not end the loop; the next one retries
                logger.exception("cleanup failed")

    async with running(loop(), "periodic-cleanup"):
        yield
