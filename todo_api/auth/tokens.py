"""Access tokens (JWT, HS256) and refresh tokens (HMAC-derived, never stored)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from todo_api.core.config import Settings

ALGORITHM = "HS256"
ISSUER = "todo-api"
AUDIENCE = "todo-api"
ACCESS_TYPE = "access"
# RFC 9068 media type for access-token JWTs; a refresh token or an ID token never carries it.
ACCESS_HEADER_TYPE = "at+jwt"
REQUIRED_CLAIMS = ("exp", "iat", "sub", "sid", "jti", "aud", "iss", "typ")
LEEWAY_SECONDS = 30


class InvalidToken(Exception):
    """The token is malformed, forged, expired or of the wrong kind."""


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    """What a login or a refresh hands to the client."""

    access_token: str
    expires_in: int
    refresh_token: str
    session_id: uuid.UUID
    session_expires_at: datetime
    user_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class RefreshToken:
    session_id: uuid.UUID
    counter: int
    mac: str


def decode_access(token: str, signing_key: str) -> dict[str, Any]:
    """The verified claims of an access token; InvalidToken for anything else."""
    try:
        # One parse: the header is checked after the signature over it (and the claims) is.
        decoded = jwt.decode_complete(
            token,
            signing_key,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            leeway=LEEWAY_SECONDS,
            options={"require": list(REQUIRED_CLAIMS), "strict_aud": True},
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(type(exc).__name__) from None
    header: dict[str, Any] = decoded["header"]
    # Only alg and typ: kid/jku/jwk/x5u/crit would ask us to trust something we don't.
    if set(header) - {"alg", "typ"} or header.get("typ") != ACCESS_HEADER_TYPE:
        raise InvalidToken("unexpected token header")
    claims: dict[str, Any] = decoded["payload"]
    if claims.get("typ") != ACCESS_TYPE:
        raise InvalidToken("not an access token")
    return claims


class TokenKeys:
    """The keys and lifetimes that tokens are made and checked with."""

    def __init__(self, settings: Settings) -> None:
        self.signing_key = settings.key_for("access-token").hex()
        self._refresh_key = settings.key_for("refresh-token")
        self.access_lifetime = timedelta(minutes=settings.access_token_expire_minutes)

    def issue_access(self, user_id: uuid.UUID, session_id: uuid.UUID) -> str:
        now = datetime.now(UTC)
        claims = {
            "sub": str(user_id),
            "sid": str(session_id),
            "typ": ACCESS_TYPE,
            "jti": uuid.uuid4().hex,
            "iat": now,
            "exp": now + self.access_lifetime,
            "iss": ISSUER,
            "aud": AUDIENCE,
        }
        return jwt.encode(
            claims, self.signing_key, algorithm=ALGORITHM, headers={"typ": ACCESS_HEADER_TYPE}
        )

    def access_claims(self, token: str) -> AccessClaims:
        claims = decode_access(token, self.signing_key)
        try:
            return AccessClaims(uuid.UUID(claims["sub"]), uuid.UUID(claims["sid"]))
        except (ValueError, TypeError, AttributeError):
            raise InvalidToken("malformed subject") from None

    @staticmethod
    def new_salt() -> str:
        return secrets.token_hex(16)

    def refresh_token(self, session_id: uuid.UUID, counter: int, salt: str) -> str:
        """`session id . counter . HMAC(key, id|counter|salt)`: recomputable, so never stored."""
        return f"{session_id}.{counter}.{self._mac(session_id, counter, salt)}"

    def parse_refresh(self, token: str) -> RefreshToken:
        try:
            raw_id, raw_counter, mac = token.split(".")
            session_id = uuid.UUID(raw_id)
            counter = int(raw_counter)
        except ValueError:
            raise InvalidToken("malformed refresh token") from None
        # One spelling only, the one we issue: a lower-case hyphenated id (not upper case,
        # braces, `urn:uuid:` or bare hex) and a counter without leading zeros, so the text a
        # rate limiter keys on cannot be varied for the same token.
        if (
            str(session_id) != raw_id
            or not raw_counter.isdigit()
            or str(counter) != raw_counter
            or len(mac) != 43
        ):
            raise InvalidToken("malformed refresh token")
        return RefreshToken(session_id, counter, mac)

    def refresh_matches(self, token: RefreshToken, salt: str) -> bool:
        expected = self._mac(token.session_id, token.counter, salt)
        return hmac.compare_digest(expected, token.mac)

    def _mac(self, session_id: uuid.UUID, counter: int, salt: str) -> str:
        message = f"{session_id}|{counter}|{salt}".encode()
        digest = hmac.new(self._refresh_key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
