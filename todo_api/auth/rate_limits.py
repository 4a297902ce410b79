"""Rate limits per route: Litestar's limiter, keyed by client IP or by device session."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.middleware.base import DefineMiddleware
from litestar.middleware.rate_limit import DurationUnit, RateLimitConfig, RateLimitMiddleware
from litestar.stores.base import Store
from litestar.stores.memory import MemoryStore
from litestar.types import Receive, Scope, Send

from todo_api.auth.cookies import refresh_cookie
from todo_api.core.config import Settings, parse_rate
from todo_api.web.client import client_ip

RATE_LIMIT_STORE = "rate_limit"


def network_of(ip: str) -> str:
    """What one client is for a limit: its IPv4 address, or its IPv6 /64 (one subscriber's
    prefix: its addresses are free to change within it)."""
    if ":" not in ip:
        return ip
    try:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    except ValueError:
        return ip


def rate_limit_store(settings: Settings) -> Store:
    """Counters in Redis when REDIS_URL is set (shared by every process), else in memory."""
    if settings.redis_url:
        from litestar.stores.redis import RedisStore

        return RedisStore.with_client(url=settings.redis_url, namespace="todo_api")
    return MemoryStore()


@dataclass
class RouteRateLimitConfig(RateLimitConfig):
    """Litestar's rate limit for the routes whose `opt["rate_limit"]` is `name`."""

    name: str = ""


class RouteRateLimitMiddleware(RateLimitMiddleware):
    """Litestar's rate limiter, passing every other route straight through: its own check
    (`check_throttle_handler`) builds a Request first, on every route of the app."""

    config: RouteRateLimitConfig

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["route_handler"].opt.get("rate_limit") != self.config.name:
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _limited(
    name: str, rate: str, key: Callable[[Request[Any, Any, Any]], str]
) -> DefineMiddleware:
    count, unit, _ = parse_rate(rate)

    def identify(request: Request[Any, Any, Any]) -> str:
        return f"{name}:{key(request)}"

    duration: DurationUnit = unit  # type: ignore[assignment]
    return RouteRateLimitConfig(
        name=name,
        rate_limit=(duration, count),
        identifier_for_request=identify,
        store=RATE_LIMIT_STORE,
        middleware_class=RouteRateLimitMiddleware,
    ).middleware


def rate_limits(settings: Settings) -> list[DefineMiddleware]:
    """Per client IP for login/register/token; per device session for refresh; per user for the
    routes that re-check the caller's password."""

    def by_ip(request: Request[Any, Any, Any]) -> str:
        return network_of(client_ip(request, settings))

    def by_user(request: Request[Any, Any, Any]) -> str:
        # These routes need a token: authentication has run and set the user.
        user = request.scope.get("user")
        return str(getattr(user, "id", "")) or f"ip:{by_ip(request)}"

    def by_session(request: Request[Any, Any, Any]) -> str:
        token = refresh_cookie(request, settings) or ""
        return token.partition(".")[0][:36] or f"ip:{by_ip(request)}"

    return [
        _limited("login", settings.rate_limit_login, by_ip),
        _limited("register", settings.rate_limit_register, by_ip),
        _limited("token", settings.rate_limit_token, by_ip),
        _limited("refresh", settings.rate_limit_refresh, by_session),
        _limited("reverify", settings.rate_limit_reverify, by_user),
    ]
