"""Authentication: Litestar's JWT auth (Bearer header or HttpOnly cookie) with our stricter
token rules, and the caller behind a token."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any, ClassVar, Self, cast

import jwt
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.security.jwt import OAuth2PasswordBearerAuth, Token

from todo_api.auth.cookies import AUTH_PATH, cookie_names, sent_once
from todo_api.auth.guards import require_same_site
from todo_api.auth.tokens import InvalidToken, TokenKeys, decode_access
from todo_api.context import AppContext
from todo_api.core.config import Settings
from todo_api.core.identity import CurrentUser
from todo_api.web.request import UNSAFE_METHODS

TOKEN_URL = f"{AUTH_PATH}/token"
# Paths that need no access token; routes opt out with `opt={"exclude_from_auth": True}`.
PUBLIC_PATHS = ["^/health$", "^/ready$", "^/docs"]
# Verified access tokens remembered per process (~1 KB each); the oldest goes first.
VERIFIED_TOKENS_KEPT = 10_000


class AccessToken(Token):
    """Litestar's Token, decoded by our stricter rules (typ header, required claims, no kid/jku).

    Verified tokens are remembered by their exact text (and key) until they expire: a client
    sends the same access token for its whole 15-minute life, and verifying it again (PyJWT's
    base64, JSON and HMAC, then Litestar's Token) is measurable on every request.
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

    Litestar's middleware takes the token from the Authorization header whatever its scheme, else
    from the cookie: here only `Bearer` counts, and an unsafe request authenticated by the cookie
    must come from our own (or an allowed) origin, since browsers send the cookie to any same-site
    page (CSRF). Two access cookies (one planted by a sibling subdomain) are refused.
    """
    scheme, _, credentials = connection.headers.get("authorization", "").partition(" ")
    if credentials:
        if scheme.lower() != "bearer":
            return None
    else:
        access_cookie = cookie_names(AppContext.of(connection).settings)[0]
        if not sent_once(connection, access_cookie):
            raise NotAuthorizedException(
                f"Two {access_cookie} cookies were sent (another site of this domain may have set "
                "one); the request is refused."
            )
        if connection.scope.get("method") in UNSAFE_METHODS:
            require_same_site(connection)
    try:
        user_id, session_id = uuid.UUID(token.sub), uuid.UUID(str(token.extras["sid"]))
    except (KeyError, ValueError, TypeError):
        return None
    role = await AppContext.of(connection).live_sessions.role_of(user_id, session_id)
    return None if role is None else CurrentUser(id=user_id, session_id=session_id, role=role)


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
