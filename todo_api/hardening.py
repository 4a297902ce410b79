"""HTTP hardening: CORS allowlist, security headers with a CSP per kind of page, request timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from litestar.config.cors import CORSConfig
from litestar.datastructures import MutableScopeHeaders
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from todo_api.config import Settings
from todo_api.errors import ServiceUnavailable
from todo_api.request_id import full_path

# JSON API responses need nothing from a browser: no scripts, no framing.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# Swagger UI and ReDoc: Litestar loads their bundles from jsDelivr / cdn.redoc.ly and starts
# them with an inline script.
DOCS_CSP = (
    "default-src 'none'; "
    "script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://cdn.redoc.ly; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src 'self' data: https://fonts.gstatic.com; "
    "img-src 'self' data: https://cdn.jsdelivr.net https://cdn.redoc.ly; "
    "worker-src 'self' blob:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
# Piccolo admin is a single-page app served from /admin/ itself.
ADMIN_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "font-src 'self' data:; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)
EXPOSED_HEADERS = ["ETag", "Location", "Retry-After", "X-Request-ID", "Idempotent-Replayed"]


def cors_config(settings: Settings) -> CORSConfig | None:
    """An explicit allowlist with credentials, or no CORS at all (Litestar's default is `*`)."""
    if not settings.allowed_origins:
        return None
    return CORSConfig(
        allow_origins=list(settings.allowed_origins),
        allow_credentials=True,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=[
            "Authorization",
            "Content-Type",
            "If-Match",
            "Idempotency-Key",
            "X-Request-ID",
        ],
        expose_headers=EXPOSED_HEADERS,
        max_age=600,
    )


def security_headers(
    settings: Settings,
) -> Callable[[Message, Scope], Coroutine[Any, Any, None]]:
    """A `before_send` hook adding the security headers to every response."""
    hsts = "max-age=63072000; includeSubDomains" if settings.app_env == "prod" else None

    async def add(message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start":
            return
        headers = MutableScopeHeaders.from_message(message)
        path = full_path(scope)
        if path.startswith("/docs"):
            csp = DOCS_CSP
        elif path.startswith("/admin"):
            csp = ADMIN_CSP
        else:
            csp = API_CSP
        headers.setdefault("Content-Security-Policy", csp)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "no-referrer")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        if hsts:
            headers.setdefault("Strict-Transport-Security", hsts)

    return add


def request_timeout(seconds: float) -> Callable[[ASGIApp], ASGIApp]:
    """Middleware: a request that takes longer than `seconds` is cut off with a 503 problem, so
    a slow query or a stuck dependency cannot pin a worker."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            started = False

            async def tracking_send(message: Message) -> None:
                nonlocal started
                started = started or message["type"] == "http.response.start"
                await send(message)

            try:
                async with asyncio.timeout(seconds):
                    await app(scope, receive, tracking_send)
            except TimeoutError:
                if started:  # too late for an error response; the client sees a cut stream
                    raise
                raise ServiceUnavailable(
                    "The request took too long and was cancelled; try again.",
                    headers={"Retry-After": "1"},
                ) from None

        return middleware

    return wrap
