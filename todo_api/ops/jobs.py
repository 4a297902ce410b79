"""Housekeeping, in the app on an interval and as `just cleanup`: purge dead device sessions,
to-do tombstones and audit events past their retention, expired idempotency keys and expired
admin staff sessions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from piccolo_api.session_auth.tables import SessionsBase

from todo_api.core import db
from todo_api.auth.tables import AuthEvent, DeviceSession
from todo_api.core.config import Settings
from todo_api.todos.service import IDEMPOTENCY_KEY_LIFETIME
from todo_api.todos.tables import IdempotencyKey, SyncHorizon, Todo

logger = logging.getLogger(__name__)

# Dead sessions are kept this long so a replayed refresh token still finds its (revoked) session.
DEAD_SESSION_RETENTION = timedelta(days=1)
# pg_advisory lock id: one cleanup at a time across every process on the database.
CLEANUP_LOCK_ID = 0x70D0_C1EA


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
    moment = datetime.now(UTC)
    cutoff = moment - DEAD_SESSION_RETENTION
    idle_cutoff = cutoff - timedelta(days=settings.refresh_token_expire_days)
    engine = db.get_engine()
    async with engine.transaction():
        locked = await engine.run_ddl(f"SELECT pg_try_advisory_xact_lock({CLEANUP_LOCK_ID}) AS ok")
        if not locked[0]["ok"]:
            return CleanupResult(ran=False)
        sessions = await (
            DeviceSession.delete()
            .where(
                (DeviceSession.revoked_at < cutoff)
                | (DeviceSession.expires_at < cutoff)
                | (DeviceSession.last_used_at < idle_cutoff)
            )
            .returning(DeviceSession.id)
        )
        tombstones = await (
            Todo.delete()
            .where(Todo.deleted_at < moment - timedelta(days=settings.tombstone_retention_days))
            .returning(Todo.change_xid)
        )
        if tombstones:
            # Sync tokens at or below the newest purged deletion may have missed it: 410 for them.
            newest = max(row["change_xid"] for row in tombstones)
            await SyncHorizon.update({SyncHorizon.purged_through_xid: newest}).where(
                (SyncHorizon.id == 1) & (SyncHorizon.purged_through_xid < newest)
            )
        events = await (
            AuthEvent.delete()
            .where(
                AuthEvent.created_at < moment - timedelta(days=settings.auth_event_retention_days)
            )
            .returning(AuthEvent.id)
        )
        # Piccolo admin's staff sessions; its Timestamp columns are naive, in server-local time.
        staff_sessions = await (
            SessionsBase.delete()
            .where(SessionsBase.expiry_date < datetime.now())
            .returning(SessionsBase.id)
        )
        keys = await (
            IdempotencyKey.delete()
            .where(IdempotencyKey.created_at < moment - IDEMPOTENCY_KEY_LIFETIME)
            .returning(IdempotencyKey.id)
        )
    return CleanupResult(
        ran=True,
        sessions_deleted=len(sessions),
        todos_purged=len(tombstones),
        idempotency_keys_deleted=len(keys),
        auth_events_deleted=len(events),
        staff_sessions_deleted=len(staff_sessions),
    )


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
