"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency

from todo_api.core import db
from todo_api.core.config import Settings
from todo_api.core.errors import ServiceUnavailable

# A readiness probe that hangs is worse than one that fails: load balancers give up and guess.
READY_TIMEOUT_SECONDS = 2.0


class Health(msgspec.Struct, kw_only=True):
    status: str
    database: str | None = None


class HealthController(Controller):
    tags = ["health"]
    include_in_schema = True

    @get("/health", operation_id="Health", summary="The process is alive", cache_control=None)
    async def health(self) -> Health:
        return Health(status="ok")

    @get("/ready", operation_id="Ready", summary="The database answers (else 503)")
    async def ready(self, settings: NamedDependency[Settings]) -> Health:
        try:
            await db.check_database(min(READY_TIMEOUT_SECONDS, settings.db_timeout_seconds))
        except db.DATABASE_UNAVAILABLE as exc:
            await db.forget_broken_connections()
            raise ServiceUnavailable(
                "The database is unreachable.", headers={"Retry-After": "2"}
            ) from exc
        return Health(status="ok", database="ok")
