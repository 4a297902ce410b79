"""HTTP hardening: CORS allowlist, security headers with a CSP per kind of page, request timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from litestar.config.cors import CORSConfig
from litestar.datastructures import MutableScopeHeaders
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from todo_api.core.config import Settings
from todo_api.core.errors import ServiceUnavailable
from todo_api.web.request_id import full_path

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
NO_STORE = (b"cache-control", b"no-store")
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
    """A `before_send` hook adding the security headers to every response (those a handler set
    itself are kept)."""
    common = [
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("X-Frame-Options", "DENY"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
    ]
    if settings.app_env == "prod":
        common.append(("Strict-Transport-Security", "max-age=63072000; includeSubDomains"))
    by_kind = {
        csp: [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in [("Content-Security-Policy", csp), *common]
        ]
        for csp in (API_CSP, DOCS_CSP, ADMIN_CSP)
    }

    async def add(message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start":
            return
        path = full_path(scope)
        if path.startswith("/docs"):
            csp = DOCS_CSP
        elif path.startswith("/admin"):
            csp = ADMIN_CSP
        else:
            csp = API_CSP
        # Appended to the raw header list, not through MutableScopeHeaders.setdefault: that
        # decodes and lower-cases every header for each lookup (measurable per request).
        raw = MutableScopeHeaders.from_message(message).headers
        present = {name.lower() for name, _ in raw}
        raw.extend(header for header in by_kind[csp] if header[0] not in present)
        # What an authenticated caller gets is theirs alone: no browser or shared cache keeps it.
        if scope.get("user") is not None and b"cache-control" not in present:
            raw.append(NO_STORE)

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
