"""The auth cookies: names, attributes, setting and clearing them, reading the refresh cookie."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie

from todo_api.auth.tokens import IssuedTokens
from todo_api.core.config import Settings

AUTH_PATH = "/api/v1/auth"


def cookie_names(settings: Settings) -> tuple[str, str]:
    """(access, refresh) cookie names; `__Secure-` prefixed whenever cookies are Secure."""
    prefix = "__Secure-" if settings.cookie_secure else ""
    return f"{prefix}access_token", f"{prefix}refresh_token"


# Tokens are URL-safe base64 and dots: nothing in them needs quoting in a cookie.
_COOKIE_SAFE = re.compile(r"^[A-Za-z0-9._-]*$")


@dataclass
class TokenCookie(Cookie):
    """Litestar's Cookie, written out directly: Litestar renders every cookie through
    `http.cookies.SimpleCookie`, which is slow, and a login or refresh sets two. Same attributes
    as SimpleCookie writes; a value that would need quoting falls back to Litestar's rendering."""

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


def _auth_cookie(settings: Settings, key: str, value: str, max_age: int, path: str) -> TokenCookie:
    """An auth cookie with the attributes every one of them carries (a browser ignores a
    deleting Set-Cookie for a `__Secure-` cookie unless it has them too)."""
    return TokenCookie(
        key=key,
        value=value,
        max_age=max_age,
        path=path,
        httponly=True,
        secure=settings.cookie_secure,
        samesite="strict",
    )


def set_auth_cookies(response: Response[Any], settings: Settings, tokens: IssuedTokens) -> None:
    access_name, refresh_name = cookie_names(settings)
    remaining = int((tokens.session_expires_at - datetime.now(UTC)).total_seconds())
    response.set_cookie(
        _auth_cookie(settings, access_name, tokens.access_token, tokens.expires_in, "/")
    )
    response.set_cookie(
        _auth_cookie(settings, refresh_name, tokens.refresh_token, max(remaining, 0), AUTH_PATH)
    )
    response.headers["Cache-Control"] = "no-store"


def clear_auth_cookies(response: Response[Any], settings: Settings) -> None:
    access_name, refresh_name = cookie_names(settings)
    for name, path in ((access_name, "/"), (refresh_name, AUTH_PATH)):
        response.set_cookie(_auth_cookie(settings, name, "", 0, path))
    response.headers["Cache-Control"] = "no-store"


def sent_once(connection: ASGIConnection[Any, Any, Any, Any], name: str) -> bool:
    """Whether the request carries at most one cookie called `name`. A sibling subdomain can
    plant a second one under our name (cookie tossing), and parsers keep whichever comes last:
    a request with two is refused rather than guessed at."""
    wanted = name.encode("latin-1")
    count = 0
    for key, value in connection.scope["headers"]:
        if key == b"cookie":
            count += sum(
                1 for part in value.split(b";") if part.strip().split(b"=", 1)[0] == wanted
            )
    return count <= 1


def refresh_cookie(request: Request[Any, Any, Any], settings: Settings) -> str | None:
    """The refresh cookie, if there is exactly one."""
    name = cookie_names(settings)[1]
    return request.cookies.get(name) if sent_once(request, name) else None
