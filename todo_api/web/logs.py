"""Logging: JSON lines in prod, readable lines in dev, and one line per request.

The request line carries method, path (never the query string), status, duration, request id
and user id: nothing a client sent as a secret (headers, cookies, bodies) is ever logged.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar.logging.config import LoggingConfig
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from todo_api.core.config import Settings
from todo_api.web.request_id import full_path, request_id

# The logging HOWTO's "Optimization": none of our formats shows the caller's file and line,
# thread or process, so LogRecords need not look them up (a stack walk and three lookups for
# every log line; the request line is written on every request).
logging._srcfile = None
logging.logThreads = False
logging.logProcesses = False
logging.logMultiprocessing = False

REQUEST_LOGGER = "todo_api.web.request"
_STARTED = "request_started"
# LogRecord attributes that are not "extra" fields passed by the caller.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
# Already spelled out in the request line's message; the console shows them once.
_IN_REQUEST_MESSAGE = {"method", "path", "status", "duration_ms"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extra fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return msgspec.json.encode(entry, enc_hook=str).decode()


class ConsoleFormatter(logging.Formatter):
    """`time level logger message key=value ...` for people reading a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(
            f"{k}={v}"
            for k, v in vars(record).items()
            if k not in _STANDARD and k not in _IN_REQUEST_MESSAGE
        )
        line = f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<7} {record.name}: "
        line += record.getMessage() + (f" {extra}" if extra else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def logging_config(settings: Settings) -> LoggingConfig:
    formatter = JsonFormatter if settings.log_format == "json" else ConsoleFormatter
    return LoggingConfig(
        root={"level": settings.log_level, "handlers": ["console"]},
        formatters={"standard": {"()": formatter}},
        loggers={
            "todo_api": {"level": settings.log_level, "propagate": True},
            # Per-query chatter from the driver is not wanted, its warnings are.
            "asyncpg": {"level": "WARNING", "propagate": True},
        },
        log_exceptions="debug",
        configure_root_logger=True,
    )


def request_timer(app: ASGIApp) -> ASGIApp:
    """Middleware: note when the request reached its route's middleware stack."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        scope.setdefault("state", {})[_STARTED] = time.perf_counter()
        await app(scope, receive, send)

    return middleware


async def log_request(message: Message, scope: Scope) -> None:
    """`before_send` hook: one line per HTTP response, router 404s and errors included."""
    if message["type"] != "http.response.start":
        return
    method = str(scope.get("method", ""))
    path = full_path(scope)
    started = scope.get("state", {}).get(_STARTED)
    user = scope.get("user")
    duration_ms = round((time.perf_counter() - started) * 1000, 2) if started else 0.0
    logging.getLogger(REQUEST_LOGGER).info(
        "%s %s %s %.2fms",
        method,
        path,
        message["status"],
        duration_ms,
        extra={
            "method": method,
            "path": path,
            "status": message["status"],
            "duration_ms": duration_ms,
            "request_id": request_id(scope),
            "user_id": str(user.id) if getattr(user, "id", None) else None,
        },
    )
