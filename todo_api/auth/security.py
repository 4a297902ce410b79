"""The HTTP side of auth: Litestar's JWT auth, the auth cookies, client addresses, rate limits."""

from __future__ import annotations

import ipaddress
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Self, cast

import jwt
from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.middleware.base import DefineMiddleware
from litestar.middleware.rate_limit import DurationUnit, RateLimitConfig, RateLimitMiddleware
from litestar.security.jwt import OAuth2PasswordBearerAuth, Token
from litestar.types import Receive, Scope, Send

from todo_api.auth.audit import Client
from todo_api.auth.live_sessions import LiveSessions
from todo_api.auth.service import CurrentUser, IssuedTokens
from todo_api.auth.tokens import InvalidToken, TokenKeys, decode_access
from todo_api.core.config import Settings

AUTH_PATH = "/api/v1/auth"
TOKEN_URL = f"{AUTH_PATH}/token"
RATE_LIMIT_STORE = "rate_limit"
# Paths that need no access token; routes opt out with `opt={"exclude_from_auth": True}`.
PUBLIC_PATHS = ["^/health$", "^/ready$", "^/docs"]
# Verified access tokens remembered per process (~1 KB each); the oldest goes first.
VERIFIED_TOKENS_KEPT = 10_000


class AccessToken(Token):
    """Litestar's Token, decoded by our stricter rules (typ header, required claims, no kid/jku).

    Verified tokens are remembered by their exact text (and key) until they expire: a client
    sends the same access token for its whole 15-minute life, and verifying it again (PyJWT's
    base64, JSON and HMAC, then Litestar's Token) was ~10% of a GET's CPU under `just bench`.
    Any other text, a single character changed, is verified in full. The session behind it is
    still checked on every request (retrieve_user).
    """

    _verified: ClassVar[dict[tuple[str, str], AccessToken]] = {}

    @classmethod
    def decode(
        cls,
        encoded_token: str,
        secret: str,
        algorithm: str,
        audience: str | Sequence[str] | None = None,
        issuer: str | Sequence[str] | None = None,
        require_claims: Sequence[str] | None = None,
        verify_exp: bool = True,
        verify_nbf: bool = True,
        strict_audience: bool = False,
    ) -> Self:
        key = (secret, encoded_token)
        known = cls._verified.get(key)
        if known is not None:
            if known.exp.timestamp() > time.time():
                return cast(Self, known)
            cls._verified.pop(key, None)
        token = super().decode(
            encoded_token,
            secret,
            algorithm,
            audience=audience,
            issuer=issuer,
            require_claims=require_claims,
            verify_exp=verify_exp,
            verify_nbf=verify_nbf,
            strict_audience=strict_audience,
        )
        if len(cls._verified) >= VERIFIED_TOKENS_KEPT:
            cls._verified.pop(next(iter(cls._verified)), None)
        cls._verified[key] = token
        return token

    @classmethod
    def decode_payload(
        cls,
        encoded_token: str,
        secret: str,
        algorithms: list[str],
        issuer: str | Sequence[str] | None = None,
        audience: str | Sequence[str] | None = None,
        options: Any = None,
    ) -> Any:
        try:
            return decode_access(encoded_token, secret)
        except InvalidToken as exc:
            # Litestar turns this into a 401.
            raise jwt.InvalidTokenError(str(exc)) from None


async def retrieve_user(
    token: Token, connection: ASGIConnection[Any, Any, Any, Any]
) -> CurrentUser | None:
    """The caller of an access token, if its session is live and its account active.

    Checked on every request (from the live-session cache, see auth/live_sessions.py), so
    logout, revocation, deactivation and deletion act at once in this process and within
    milliseconds in every other. Idle expiry is a refresh-time rule: an access token outlives no
    idle window.
    """
    try:
        user_id, session_id = uuid.UUID(token.sub), uuid.UUID(str(token.extras["sid"]))
    except (KeyError, ValueError, TypeError):
        return None
    sessions: LiveSessions = connection.app.state.live_sessions
    role = await sessions.role_of(user_id, session_id)
    return None if role is None else CurrentUser(id=user_id, session_id=session_id, role=role)


def cookie_names(settings: Settings) -> tuple[str, str]:
    """(access, refresh) cookie names; `__Secure-` prefixed whenever cookies are Secure."""
    prefix = "__Secure-" if settings.cookie_secure else ""
    return f"{prefix}access_token", f"{prefix}refresh_token"


def build_auth(settings: Settings, keys: TokenKeys) -> OAuth2PasswordBearerAuth[CurrentUser, Token]:
    """Bearer header or HttpOnly cookie; every request re-checks the device session."""
    access_cookie, _ = cookie_names(settings)
    return OAuth2PasswordBearerAuth[CurrentUser, Token](
        retrieve_user_handler=retrieve_user,
        token_secret=keys.signing_key,
        token_url=TOKEN_URL,
        token_cls=AccessToken,
        key=access_cookie,
        path="/",
        secure=settings.cookie_secure,
        samesite="strict",
        default_token_expiration=keys.access_lifetime,
        exclude=PUBLIC_PATHS,
        exclude_opt_key="exclude_from_auth",
        description="Log in with POST /api/v1/auth/login (or the form at /api/v1/auth/token) "
        "and send the access token as `Authorization: Bearer <token>`.",
    )


# Tokens are URL-safe base64 and dots: nothing in them needs quoting in a cookie.
_COOKIE_SAFE = re.compile(r"^[A-Za-z0-9._-]*$")


@dataclass
class TokenCookie(Cookie):
    """Litestar's Cookie, written out directly: Litestar renders every cookie through
    `http.cookies.SimpleCookie` (~90 µs each; a login or refresh sets two, a sixth of a refresh's
    CPU under `just bench`). Same attributes as SimpleCookie writes; a value that would need
    quoting falls back to Litestar's rendering."""

    def to_encoded_header(self) -> tuple[bytes, bytes]:
        value = self.value or ""
        if not _COOKIE_SAFE.match(value) or self.domain or self.expires is not None:
            return super().to_encoded_header()
        parts = [f"{self.key}={value}", f"Path={self.path}", f"SameSite={self.samesite}"]
        if self.max_age is not None:
            parts.append(f"Max-Age={self.max_age}")
        if self.httponly:
            parts.append("HttpOnly")
        if self.secure:
            parts.append("Secure")
        return b"set-cookie", "; ".join(parts).encode("latin-1")


def set_auth_cookies(response: Response[Any], settings: Settings, tokens: IssuedTokens) -> None:
    access_name, refresh_name = cookie_names(settings)
    remaining = int((tokens.session_expires_at - datetime.now(UTC)).total_seconds())
    response.set_cookie(
        TokenCookie(
            key=access_name,
            value=tokens.access_token,
            max_age=tokens.expires_in,
            path="/",
            httponly=True,
            secure=settings.cookie_secure,
            samesite="strict",
        )
    )
    response.set_cookie(
        TokenCookie(
            key=refresh_name,
            value=tokens.refresh_token,
            max_age=max(remaining, 0),
            path=AUTH_PATH,
            httponly=True,
            secure=settings.cookie_secure,
            samesite="strict",
        )
    )
    response.headers["Cache-Control"] = "no-store"


def clear_auth_cookies(response: Response[Any], settings: Settings) -> None:
    access_name, refresh_name = cookie_names(settings)
    for name, path in ((access_name, "/"), (refresh_name, AUTH_PATH)):
        response.delete_cookie(name, path=path)
    response.headers["Cache-Control"] = "no-store"


def refresh_cookie(request: Request[Any, Any, Any], settings: Settings) -> str | None:
    return request.cookies.get(cookie_names(settings)[1])


def client_ip(connection: ASGIConnection[Any, Any, Any, Any], settings: Settings) -> str:
    """The socket peer, unless it is a trusted proxy: then the nearest untrusted X-Forwarded-For hop."""
    peer = connection.client.host if connection.client else ""
    if not settings.trusted_proxies or peer not in settings.trusted_proxies:
        return peer
    hops = [hop.strip() for hop in connection.headers.get("x-forwarded-for", "").split(",")]
    for hop in reversed(hops):
        if hop and hop not in settings.trusted_proxies:
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer
    return peer


def client_of(request: Request[Any, Any, Any], settings: Settings) -> Client:
    return Client(ip=client_ip(request, settings), user_agent=request.headers.get("user-agent", ""))


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
    count, unit = rate.split("/")

    def identify(request: Request[Any, Any, Any]) -> str:
        return f"{name}:{key(request)}"

    duration: DurationUnit = unit  # type: ignore[assignment]
    return RouteRateLimitConfig(
        name=name,
        rate_limit=(duration, int(count)),
        identifier_for_request=identify,
        store=RATE_LIMIT_STORE,
        middleware_class=RouteRateLimitMiddleware,
    ).middleware


def rate_limits(settings: Settings) -> list[DefineMiddleware]:
    """Per client IP for login/register/token; per device session for refresh."""

    def by_ip(request: Request[Any, Any, Any]) -> str:
        return client_ip(request, settings)

    def by_session(request: Request[Any, Any, Any]) -> str:
        token = refresh_cookie(request, settings) or ""
        return token.partition(".")[0][:36] or f"ip:{by_ip(request)}"

    return [
        _limited("login", settings.rate_limit_login, by_ip),
        _limited("register", settings.rate_limit_register, by_ip),
        _limited("token", settings.rate_limit_token, by_ip),
        _limited("refresh", settings.rate_limit_refresh, by_session),
    ]
