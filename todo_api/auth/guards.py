"""Authorization guards: roles, and no cross-site calls to the cookie-authenticated endpoints."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers import HTTPRouteHandler
from litestar.handlers.base import BaseRouteHandler

from todo_api.context import AppContext
from todo_api.core.identity import CurrentUser, Role, has_role

# Async: Litestar runs a synchronous guard in a worker thread (a thread hop per request).
Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]


def _answers_only_allow(handler: BaseRouteHandler) -> bool:
    """Whether `handler` is the OPTIONS handler Litestar adds to every path (it says only which
    methods the path has). It belongs to the controller, so the controller's guards run for it,
    but the auth middleware lets OPTIONS through unauthenticated (CORS preflights carry no
    credentials): a guard finds no user there."""
    return (
        isinstance(handler, HTTPRouteHandler)
        and handler.http_methods == {"OPTIONS"}
        and handler.fn.__module__.startswith("litestar.")
    )


def requires_role(role: Role) -> Guard:
    """Let through callers whose role is `role` or above."""

    async def guard(
        connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
    ) -> None:
        if _answers_only_allow(handler):
            return
        # Not `connection.user`: it raises (a 500) when no authentication ran.
        user = connection.scope.get("user")
        if not isinstance(user, CurrentUser):
            raise NotAuthorizedException()
        # The role as stored now, not as cached (auth/live_sessions.py): a demotion made by
        # another process must bind at once on these routes, which are few and not hot.
        sessions = AppContext.of(connection).live_sessions
        current = await sessions.role_of(user.id, user.session_id, fresh=True)
        if current is None:
            raise NotAuthorizedException()
        if not has_role(current, role):
            raise PermissionDeniedException(f"This needs the {role} role.")
        # The handler decides with the role just read, not the one cached at authentication.
        connection.scope["user"] = CurrentUser(id=user.id, session_id=user.session_id, role=current)

    return guard


CROSS_SITE = "Cross-site requests are not accepted here."


def require_same_site(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """Refuse a request a browser marks as cross-site, or whose Origin is neither ours nor
    allowed (PermissionDeniedException, a 403). SameSite=Strict cookies stop cross-*site*
    requests only: this also covers sibling subdomains, other ports and old browsers."""
    settings = AppContext.of(connection).settings
    origin = connection.headers.get("origin")
    allowed = origin is not None and origin in settings.allowed_origins
    if connection.headers.get("sec-fetch-site") == "cross-site" and not allowed:
        raise PermissionDeniedException(CROSS_SITE)
    if origin is None or allowed:
        return
    own = f"{connection.url.scheme}://{connection.url.netloc}"
    if origin != own:
        raise PermissionDeniedException(CROSS_SITE)


async def reject_cross_site(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """`require_same_site` as a guard, for the public routes that read the auth cookies (login,
    refresh, logout). It runs before the handler, so a refused refresh consumes nothing. (Every
    other unsafe request that the access cookie authenticates is checked in authentication.)"""
    require_same_site(connection)
