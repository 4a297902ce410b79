"""Attacks on authentication: forged and stale access tokens, forged refresh cookies, cross-site
calls and hostile input. Each is refused with a problem response and leaves the database as it was.

Each test costs a fresh database, so the variants of one attack run in a loop inside its test and
every assertion names the variant that broke it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import jwt
import pytest

from tests.support.accounts import (
    PASSWORD,
    Device,
    login,
    new_user,
    refresh_with,
    register,
    unique_email,
)
from tests.support.problems import assert_problem
from todo_api.core.config import Settings

pytestmark = pytest.mark.anyio

ME = "/api/v1/users/me"
REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
TOKEN = "/api/v1/auth/token"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
LOGOUT_ALL = "/api/v1/auth/logout-all"
EVIL_ORIGIN = "https://evil.example"
# The access-token contract (DESIGN.md §4), spelled out rather than imported from the code under test.
ISSUER = AUDIENCE = "todo-api"
HEADER_TYPE = "at+jwt"
REQUIRED_CLAIMS = ("exp", "iat", "sub", "sid", "jti", "aud", "iss", "typ")
CROSS_SITE_HEADERS: dict[str, dict[str, str]] = {
    "evil_origin": {"Origin": EVIL_ORIGIN},
    "null_origin": {"Origin": "null"},
    "sibling_origin": {"Origin": "http://evil.testserver"},
    "sec_fetch_site_cross_site": {"Sec-Fetch-Site": "cross-site"},
    "both": {"Origin": EVIL_ORIGIN, "Sec-Fetch-Site": "cross-site"},
}
# The configured limit is 1 MiB; this is comfortably past it.
OVERSIZED = 1024 * 1024 + 1024
NEW_PASSWORD = "a brand new passphrase"


# --- helpers -------------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def hand_built(
    header: dict[str, Any],
    claims: dict[str, Any],
    key: bytes | None,
    digest: Callable[..., Any] = hashlib.sha256,
) -> str:
    """A JWT assembled by hand, for headers PyJWT will not produce (alg spellings, RS256, no key)."""
    signing_input = f"{b64json(header)}.{b64json(claims)}"
    signature = (
        b64url(hmac.new(key, signing_input.encode(), digest).digest()) if key is not None else ""
    )
    return f"{signing_input}.{signature}"


def claims_for(device: Device, **changes: Any) -> dict[str, Any]:
    """Claims as the server issues them for `device`, with `changes` applied."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": device.user_id,
        "sid": device.session_id,
        "typ": "access",
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 600,
        "iss": ISSUER,
        "aud": AUDIENCE,
    }
    claims.update(changes)
    return claims


def sign(
    claims: dict[str, Any],
    key: str | bytes,
    *,
    algorithm: str = "HS256",
    headers: dict[str, Any] | None = None,
) -> str:
    return jwt.encode(
        claims, key, algorithm=algorithm, headers={"typ": HEADER_TYPE, **(headers or {})}
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def access_cookie(token: str) -> dict[str, str]:
    return {"Cookie": f"access_token={token}"}


def assert_status(response: httpx.Response, status: int, case: str) -> dict[str, object]:
    """assert_problem, saying which variant got which answer when it fails."""
    assert response.status_code == status, f"{case}: {response.status_code} {response.text[:300]}"
    return assert_problem(response, status)


def assert_unauthorized(response: httpx.Response, case: str = "") -> dict[str, object]:
    body = assert_status(response, 401, case)
    assert response.headers.get("www-authenticate", "").lower().startswith("bearer"), case
    return body


def assert_validation_problem(response: httpx.Response, case: str) -> dict[str, object]:
    """A 400/422 problem listing what was wrong: never a 500, never a success."""
    assert response.status_code in (400, 422), f"{case}: {response.status_code} {response.text}"
    body = assert_problem(response, response.status_code)
    errors = body.get("errors")
    assert isinstance(errors, list), f"{case}: no errors list in {body}"
    assert errors, case
    return body


async def assert_token_refused(client: httpx.AsyncClient, token: str, case: str = "") -> None:
    for via, headers in (("bearer", bearer(token)), ("cookie", access_cookie(token))):
        assert_unauthorized(await client.get(ME, headers=headers), f"{case} via {via}")


async def assert_token_accepted(client: httpx.AsyncClient, device: Device) -> None:
    response = await client.get(ME, headers=device.headers)
    assert response.status_code == 200, response.text
    assert response.json()["id"] == device.user_id


async def count(conn: asyncpg.Connection, table: str) -> int:
    value: int = await conn.fetchval(f"SELECT count(*) FROM {table}")
    return value


async def session_state(conn: asyncpg.Connection, session_id: str) -> tuple[Any, ...]:
    """(refresh_counter, rotated_at, last_used_at, revoked_at) of one device session."""
    row = await conn.fetchrow(
        "SELECT refresh_counter, rotated_at, last_used_at, revoked_at "
        "FROM device_session WHERE id = $1",
        uuid.UUID(session_id),
    )
    assert row is not None
    return tuple(row.values())


async def user_row(conn: asyncpg.Connection, user_id: str) -> tuple[Any, ...]:
    row = await conn.fetchrow(
        "SELECT email, username, display_name, role, is_active, password_hash, updated_at "
        "FROM app_user WHERE id = $1",
        uuid.UUID(user_id),
    )
    assert row is not None
    return tuple(row.values())


async def send_json(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    body: Any,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """`body` as JSON, or as-is when it is already bytes (malformed JSON)."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await client.request(
        method,
        path,
        content=content,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


@pytest.fixture
def signing_key(settings: Settings) -> str:
    """The server's real access-token key, so a forgery differs only in what is under test."""
    return settings.key_for("access-token").hex()


@pytest.fixture
async def victim(client: httpx.AsyncClient) -> Device:
    return await new_user(client)


# --- 1. access-token attacks --------------------------------------------------------------------


async def test_token_forged_with_the_real_key_is_accepted_so_the_forgeries_below_mean_something(
    client: httpx.AsyncClient, victim: Device, signing_key: str
) -> None:
    token = sign(claims_for(victim), signing_key)
    for headers in (bearer(token), access_cookie(token)):
        response = await client.get(ME, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["id"] == victim.user_id


async def test_no_token_is_rejected(client: httpx.AsyncClient, victim: Device) -> None:
    body = assert_unauthorized(await client.get(ME))
    assert body["detail"]
    assert_unauthorized(await client.get(ME, headers={"Authorization": ""}))


async def test_garbage_token_is_rejected(client: httpx.AsyncClient, victim: Device) -> None:
    for case, token in {
        "garbage": "garbage",
        "three_dots": "a.b.c",
        "empty_segments": "..",
        "empty_signature": "eyJhbGciOiJIUzI1NiJ9.e30.",
        "not_base64": "!!!.???.***",
        "huge": "A" * 8000,
        "session_id": victim.session_id,
    }.items():
        await assert_token_refused(client, token, case)
    for case, authorization in {
        "bearer_without_token": "Bearer ",
        "basic_auth": "Basic dXNlcjpwYXNz",
    }.items():
        assert_unauthorized(await client.get(ME, headers={"Authorization": authorization}), case)


async def test_alg_none_token_is_rejected(
    client: httpx.AsyncClient, victim: Device, signing_key: str
) -> None:
    claims = claims_for(victim)
    genuine_signature = sign(claims, signing_key).rsplit(".", 1)[1]
    await assert_token_refused(
        client, jwt.encode(claims, None, algorithm="none", headers={"typ": HEADER_TYPE}), "pyjwt"
    )
    for alg in ("none", "None", "NONE", "nOnE"):
        unsigned = hand_built({"alg": alg, "typ": HEADER_TYPE}, claims, None)
        await assert_token_refused(client, unsigned, alg)
        # A genuine HS256 signature under an alg-none header must not pass either.
        await assert_token_refused(client, unsigned + genuine_signature, f"{alg}+signature")


async def test_token_signed_hs512_with_the_right_key_is_rejected(
    client: httpx.AsyncClient, victim: Device, signing_key: str
) -> None:
    for algorithm in ("HS512", "HS384"):
        token = sign(claims_for(victim), signing_key, algorithm=algorithm)
        await assert_token_refused(client, token, algorithm)


async def test_token_with_an_rs256_header_is_rejected(
    client: httpx.AsyncClient, victim: Device, signing_key: str
) -> None:
    # Key confusion: an asymmetric alg checked against the HMAC secret as if it were a public key.
    for alg in ("RS256", "ES256", "PS256", "EdDSA", "hs256"):
        header = {"alg": alg, "typ": HEADER_TYPE}
        token = hand_built(header, claims_for(victim), signing_key.encode())
        await assert_token_refused(client, token, alg)


async def test_token_signed_with_a_different_key_is_rejected(
    client: httpx.AsyncClient, victim: Device, settings: Settings
) -> None:
    claims = claims_for(victim)
    for case, key in {
        "raw_secret_key": settings.secret_key.encode(),
        "signing_key_as_raw_bytes": settings.key_for("access-token"),
        "refresh_key": settings.key_for("refresh-token"),
        "refresh_key_hex": settings.key_for("refresh-token").hex().encode(),
        "cursor_key_hex": settings.key_for("cursor").hex().encode(),
        "random_key": secrets.token_bytes(32),
    }.items():
        await assert_token_refused(client, sign(claims, key), case)
    # PyJWT will not sign with an empty key; a hand-built token can.
    empty_key = hand_built({"alg": "HS256", "typ": HEADER_TYPE}, claims, b"")
    await assert_token_refused(client, empty_key, "empty_key")


async def test_expired_token_is_rejected(
    client: httpx.AsyncClient, victim: Device, signing_key: str
) -> None:
    now = int(time.time())
    # 61 s: past any leeway the design allows (≤ 60 s).
    for seconds_ago in (61, 3600, 86400 * 365):
        claims = claims_for(victim, iat=now - seconds_ago - 900, exp=now - seconds_ago)
        await assert_token_refused(client, sign(claims, signing_key), f"expired {seconds_ago}s ago")


async def test_an_accepted_token_is_refused_once_it_expires_and_a_copy_with_one_change_never(
    client: httpx.AsyncClient, victim: Device, signing_key: str
) -> None:
    # Verified tokens are remembered by their text (auth/security.py AccessToken): the memory
    # must end at `exp`, and must not answer for a token that differs by one character.
    expires = int(time.time()) + 2
    token = sign(claims_for(victim, exp=expires), signing_key)
    for _ in range(2):
        assert (await client.get(ME, headers=bearer(token))).status_code == 200
    head, payload, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    await assert_token_refused(client, f"{head}.{payload}.{flipped}", "signature changed")
    # Litestar compares `exp` with the time in whole seconds: refused within a second after it.
    await asyncio.sleep(expires - time.time() + 1.1)
    await assert_token_refused(client, token, "expired after being accepted")


async def test_token_with_iat_far_in_the_future_is_rejected(
    client: httpx.AsyncClient, victim: Device, signing_key: str
) -> None:
    now = int(time.time())
    for ahead in (3600, 86400 * 365):
        claims = claims_for(victim, iat=now + ahead, exp=now + ahead + 600)
        await assert_token_refused(client, sign(claims, signing_key), f"iat +{ahead}s")
    not_yet = claims_for(victim, nbf=now + 3600)
    await assert_token_refused(client, sign(not_yet, signing_key), "nbf +3600s")


@pytest.mark.parametrize("claim", REQUIRED_CLAIMS)
async def test_token_missing_a_required_claim_is_rejected(
    client: httpx.AsyncClient, victim: Device, signing_key: str, claim: str
) -> None:
    claims = claims_for(victim)
    del claims[claim]
    await assert_token_refused(client, sign(claims, signing_key), f"without {claim}")


async def test_token_with_the_wrong_aud_is_rejected(
    client: httpx.AsyncClient, victim: Device, signing_key: str
) -> None:
    for audience in ("other-api", "", "TODO-API", ["other-api"], ["other-api", "todo-api"]):
        token = sign(claims_for(victim, aud=audience), signing_key)
        await assert_token_refused(client, token, f"aud={audience!r}")


async def test_token_with_the_wrong_iss_is_rejected(
    client: httpx.AsyncClient, victim: Device, signing_key: str
) -> None:
    for issuer in ("evil", "", "TODO-API", "todo-api "):
        token = sign(claims_for(victim, iss=issuer), signing_key)
        await assert_token_refused(client, token, f"iss={issuer!r}")
    # PyJWT will not encode a non-string iss; a hand-built token can carry one.
    header = {"alg": "HS256", "typ": HEADER_TYPE}
    token = hand_built(header, claims_for(victim, iss=["todo-api"]), signing_key.encode())
    await assert_token_refused(client, token, "iss=['todo-api']")


async def test_token_whose_typ_claim_is_not_access_is_rejected(
    client: httpx.AsyncClient, victim: Device, signing_key: str
) -> None:
    for typ in ("refresh", "id", "ACCESS", "", None, ["access"]):
        token = sign(claims_for(victim, typ=typ), signing_key)
        await assert_token_refused(client, token, f"typ={typ!r}")


async def test_token_whose_typ_header_is_not_at_jwt_is_rejected(
    client: httpx.AsyncClient, victim: Device, signing_key: str
) -> None:
    # PyJWT drops a falsy typ, so None means "no typ header at all".
    for header_typ in ("JWT", None, "rt+jwt", "id+jwt", "at+jwt+evil"):
        token = sign(claims_for(victim), signing_key, headers={"typ": header_typ})
        await assert_token_refused(client, token, f"typ header {header_typ!r}")


async def test_token_with_jku_kid_or_crit_headers_is_rejected(
    client: httpx.AsyncClient, victim: Device, signing_key: str
) -> None:
    extra_headers: dict[str, dict[str, Any]] = {
        "jku": {"jku": "https://evil.example/jwks.json"},
        "kid": {"kid": "access-token"},
        "kid_path_traversal": {"kid": "../../../../dev/null"},
        "crit": {"crit": ["exp"]},
        "jwk": {"jwk": {"kty": "oct", "k": "c2VjcmV0"}},
        "x5u": {"x5u": "https://evil.example/cert.pem"},
        "cty": {"cty": "JWT"},
    }
    for case, extra in extra_headers.items():
        await assert_token_refused(
            client, sign(claims_for(victim), signing_key, headers=extra), case
        )


async def test_valid_token_whose_sid_belongs_to_another_user_is_rejected(
    client: httpx.AsyncClient, victim: Device, signing_key: str
) -> None:
    other = await new_user(client)
    swaps: dict[str, dict[str, Any]] = {
        "sid_of_another_user": {"sid": other.session_id},
        "sub_of_another_user": {"sub": other.user_id},
        "unknown_sid": {"sid": str(uuid.uuid4())},
        "sub_not_a_uuid": {"sub": "admin"},
        "sid_not_a_uuid": {"sid": "not-a-uuid"},
        "sub_int": {"sub": 1},
        "sid_null": {"sid": None},
        "sub_empty": {"sub": ""},
    }
    for case, changes in swaps.items():
        await assert_token_refused(client, sign(claims_for(victim, **changes), signing_key), case)
    await assert_token_accepted(client, victim)
    await assert_token_accepted(client, other)


async def test_tampered_payload_under_a_genuine_signature_is_rejected(
    client: httpx.AsyncClient, victim: Device
) -> None:
    other = await new_user(client)
    header, _, signature = other.access_token.split(".")
    payload = b64json(claims_for(victim))
    await assert_token_refused(client, f"{header}.{payload}.{signature}")


async def test_refresh_token_sent_as_a_bearer_token_is_rejected(
    client: httpx.AsyncClient, victim: Device
) -> None:
    await assert_token_refused(client, victim.refresh_token)


async def test_forged_token_cannot_change_the_profile(
    client: httpx.AsyncClient, conn: asyncpg.Connection, victim: Device
) -> None:
    before = await user_row(conn, victim.user_id)
    token = jwt.encode(claims_for(victim), None, algorithm="none", headers={"typ": HEADER_TYPE})
    response = await client.patch(ME, json={"display_name": "pwned"}, headers=bearer(token))
    assert_unauthorized(response)
    assert await user_row(conn, victim.user_id) == before


# --- 2. access tokens die with their session at once --------------------------------------------


async def test_access_token_is_refused_after_logout(
    client: httpx.AsyncClient, conn: asyncpg.Connection, victim: Device
) -> None:
    response = await victim.client.post(LOGOUT, headers=victim.headers)
    assert response.status_code == 204
    await assert_token_refused(client, victim.access_token)
    assert_status(await refresh_with(client, victim.refresh_token), 401, "refresh")
    assert (await session_state(conn, victim.session_id))[-1] is not None


async def test_access_token_is_refused_after_its_session_is_revoked_from_another_device(
    client: httpx.AsyncClient, victim: Device
) -> None:
    laptop = await login(client, victim.email)
    response = await laptop.client.delete(
        f"/api/v1/auth/sessions/{victim.session_id}", headers=laptop.headers
    )
    assert response.status_code == 204
    await assert_token_refused(client, victim.access_token)
    assert_status(await refresh_with(client, victim.refresh_token), 401, "refresh")
    await assert_token_accepted(client, laptop)


async def test_access_tokens_are_refused_after_logout_all(
    client: httpx.AsyncClient, victim: Device
) -> None:
    laptop = await login(client, victim.email)
    response = await victim.client.post(LOGOUT_ALL, headers=victim.headers)
    assert response.status_code == 204
    for name, device in (("phone", victim), ("laptop", laptop)):
        await assert_token_refused(client, device.access_token, name)
        assert_status(await refresh_with(client, device.refresh_token), 401, f"{name} refresh")


async def test_other_sessions_access_tokens_are_refused_after_a_password_change(
    client: httpx.AsyncClient, victim: Device
) -> None:
    laptop = await login(client, victim.email)
    response = await victim.client.put(
        f"{ME}/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=victim.headers,
    )
    assert response.status_code == 204, response.text
    await assert_token_refused(client, laptop.access_token)
    assert_status(await refresh_with(client, laptop.refresh_token), 401, "refresh")
    await assert_token_accepted(client, victim)


async def test_access_token_is_refused_after_admin_deactivation(
    client: httpx.AsyncClient, conn: asyncpg.Connection, victim: Device
) -> None:
    admin_account = await register(client)
    await conn.execute(
        "UPDATE app_user SET role = 'admin' WHERE id = $1", uuid.UUID(admin_account["id"])
    )
    admin = await login(client, admin_account["email"])
    response = await client.patch(
        f"/api/v1/users/{victim.user_id}", json={"is_active": False}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["is_active"] is False
    await assert_token_refused(client, victim.access_token)
    assert_status(await refresh_with(client, victim.refresh_token), 401, "refresh")
    relogin = await client.post(LOGIN, json={"login": victim.email, "password": PASSWORD})
    assert_status(relogin, 401, "login")


async def test_access_token_is_refused_after_account_deletion(
    client: httpx.AsyncClient, conn: asyncpg.Connection, victim: Device
) -> None:
    response = await client.request(
        "DELETE", ME, json={"password": PASSWORD}, headers=victim.headers
    )
    assert response.status_code == 204, response.text
    await assert_token_refused(client, victim.access_token)
    assert_status(await refresh_with(client, victim.refresh_token), 401, "refresh")
    gone = await conn.fetchval(
        "SELECT count(*) FROM app_user WHERE id = $1", uuid.UUID(victim.user_id)
    )
    assert gone == 0


# --- 3. refresh-cookie attacks ------------------------------------------------------------------


async def test_refresh_without_a_cookie_is_rejected(
    client: httpx.AsyncClient, conn: asyncpg.Connection, victim: Device
) -> None:
    before = await session_state(conn, victim.session_id)
    response = await client.post(REFRESH)
    body = assert_status(response, 401, "no cookie")
    assert body["detail"]
    assert "set-cookie" not in response.headers
    assert await session_state(conn, victim.session_id) == before


async def test_refresh_refusal_carries_a_www_authenticate_challenge(
    client: httpx.AsyncClient, victim: Device
) -> None:
    # RFC 9110 §15.5.2: a 401 MUST carry WWW-Authenticate, whichever credential was missing.
    assert_unauthorized(await client.post(REFRESH), "no cookie")
    assert_unauthorized(await refresh_with(client, victim.refresh_token + "x"), "bad cookie")


async def test_malformed_refresh_cookie_is_rejected_and_consumes_nothing(
    client: httpx.AsyncClient, conn: asyncpg.Connection, victim: Device
) -> None:
    sid, n, mac = victim.refresh_token.split(".")
    before = await session_state(conn, victim.session_id)
    for case, cookie in {
        "empty": "",
        "garbage": "garbage",
        "three_dots": "a.b.c",
        "missing_mac": f"{sid}.{n}",
        "extra_part": f"{sid}.{n}.{mac}.x",
        "negative_counter": f"{sid}.-1.{mac}",
        "signed_counter": f"{sid}.+{n}.{mac}",
        "huge_counter": f"{sid}.{'9' * 40}.{mac}",
        "short_mac": f"{sid}.{n}.{mac[:20]}",
        "long_mac": f"{sid}.{n}.{mac}AAAA",
        "not_a_uuid": f"not-a-session.{n}.{mac}",
        "unknown_session": f"{uuid.uuid4()}.{n}.{mac}",
        "jwt_shaped": victim.access_token,
    }.items():
        response = await refresh_with(client, cookie)
        assert_status(response, 401, case)
        assert "set-cookie" not in response.headers, case
    assert await session_state(conn, victim.session_id) == before
    assert (await refresh_with(client, victim.refresh_token)).status_code == 200


async def test_refresh_cookie_with_a_forged_mac_is_rejected_and_consumes_nothing(
    client: httpx.AsyncClient, conn: asyncpg.Connection, victim: Device
) -> None:
    before = await session_state(conn, victim.session_id)
    for counter in (0, 1, 5):
        for forged_mac in ("A" * 43, b64url(secrets.token_bytes(32))):
            forged = f"{victim.session_id}.{counter}.{forged_mac}"
            assert_status(await refresh_with(client, forged), 401, forged)
    assert await session_state(conn, victim.session_id) == before
    assert (await refresh_with(client, victim.refresh_token)).status_code == 200


async def test_forged_mac_for_an_old_counter_does_not_revoke_the_session(
    client: httpx.AsyncClient, conn: asyncpg.Connection, victim: Device
) -> None:
    # Knowing a session id must not be enough to trip reuse detection and log the victim out.
    rotated = await refresh_with(client, victim.refresh_token)
    assert rotated.status_code == 200
    current = rotated.cookies["refresh_token"]
    before = await session_state(conn, victim.session_id)
    forged = f"{victim.session_id}.0.{'A' * 43}"
    assert_status(await refresh_with(client, forged), 401, "forged old counter")
    assert await session_state(conn, victim.session_id) == before
    assert before[-1] is None
    assert (await refresh_with(client, current)).status_code == 200


async def test_cookie_with_one_users_session_id_and_anothers_counter_and_mac_is_rejected(
    client: httpx.AsyncClient, conn: asyncpg.Connection, victim: Device
) -> None:
    attacker = await new_user(client)
    _, attacker_counter, attacker_mac = attacker.refresh_token.split(".")
    victim_before = await session_state(conn, victim.session_id)
    attacker_before = await session_state(conn, attacker.session_id)
    spliced = f"{victim.session_id}.{attacker_counter}.{attacker_mac}"
    response = await refresh_with(client, spliced)
    assert_status(response, 401, "spliced")
    assert "set-cookie" not in response.headers
    assert await session_state(conn, victim.session_id) == victim_before
    assert await session_state(conn, attacker.session_id) == attacker_before
    for device in (victim, attacker):
        assert (await refresh_with(client, device.refresh_token)).status_code == 200


async def test_cross_site_refresh_is_forbidden_and_does_not_consume_the_token(
    client: httpx.AsyncClient, conn: asyncpg.Connection, victim: Device
) -> None:
    before = await session_state(conn, victim.session_id)
    for case, cross_site in CROSS_SITE_HEADERS.items():
        response = await refresh_with(client, victim.refresh_token, **cross_site)
        body = assert_status(response, 403, case)
        assert body["detail"], case
        assert "set-cookie" not in response.headers, case
        assert "access_token" not in response.text, case
        assert await session_state(conn, victim.session_id) == before, case
    # The very cookie that was presented cross-site is still the current one.
    again = await refresh_with(client, victim.refresh_token)
    assert again.status_code == 200, again.text
    assert (await session_state(conn, victim.session_id))[0] == before[0] + 1


async def test_same_origin_refresh_is_allowed(client: httpx.AsyncClient, victim: Device) -> None:
    response = await refresh_with(
        client,
        victim.refresh_token,
        Origin="http://testserver",
        **{"Sec-Fetch-Site": "same-origin"},
    )
    assert response.status_code == 200, response.text


# --- 4. hostile input on register, login and PATCH /users/me ------------------------------------

MALFORMED_JSON: dict[str, bytes] = {
    "truncated": b'{"email": "a@example.com", "password": ',
    "trailing_comma": b'{"email": "a@example.com",}',
    "single_quotes": b"{'email': 'a@example.com'}",
    "form_encoded": b"email=a@example.com&password=x",
    "empty_body": b"",
    "lone_surrogate": b'{"email": "a@example.com", "display_name": "\\ud800"}',
    "nan": b'{"email": NaN}',
    "two_documents": b"{}{}",
}
NOT_AN_OBJECT: dict[str, Any] = {
    "array": [],
    "array_of_object": [{"email": "a@example.com"}],
    "string": "a@example.com",
    "number": 42,
    "null": None,
    "true": True,
}
DROP = object()
LONG_EMAIL = "a" * 309 + "@example.com"  # 321 characters


def without_dropped(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if value is not DROP}


REGISTER_INVALID: dict[str, dict[str, dict[str, Any]]] = {
    "unknown_fields": {
        "unknown_field": {"nickname": "m"},
        "role": {"role": "superadmin"},
        "is_active": {"is_active": True},
        "id": {"id": str(uuid.uuid4())},
        "password_hash": {"password_hash": "$argon2id$forged"},
    },
    "wrong_types": {
        "missing_email": {"email": DROP},
        "missing_password": {"password": DROP},
        "email_int": {"email": 123},
        "email_list": {"email": ["a@example.com"]},
        "email_null": {"email": None},
        "password_int": {"password": 12345678},
        "password_object": {"password": {"$ne": ""}},
        "username_int": {"username": 42},
        "display_name_bool": {"display_name": True},
    },
    "empty_and_overlong_strings": {
        "empty_email": {"email": ""},
        "empty_password": {"password": ""},
        "empty_username": {"username": ""},
        "email_over_320": {"email": LONG_EMAIL},
        "display_name_over_100": {"display_name": "d" * 101},
        "username_over_50": {"username": "u" * 51},
        "password_over_1024": {"password": "p" * 1025},
        "password_of_about_1_mb": {"password": "p" * 1_000_000},
    },
    "nul_characters": {
        "email": {"email": "mal\x00lory@example.com"},
        "password": {"password": "correct horse\x00battery"},
        "username": {"username": "mal\x00lory"},
        "display_name": {"display_name": "Mal\x00lory"},
    },
    "invalid_email_or_password": {
        "email_without_at": {"email": "not-an-email"},
        "email_without_dot": {"email": "mallory@localhost"},
        "email_with_space": {"email": "mal lory@example.com"},
        "email_two_ats": {"email": "mallory@@example.com"},
        "email_header_injection": {"email": "mallory@example.com\nBcc: x@example.com"},
        "username_bad_chars": {"username": "mal lory<script>"},
        "password_of_7": {"password": "1234567"},
    },
}


@pytest.mark.parametrize("category", REGISTER_INVALID)
async def test_register_with_invalid_fields_is_rejected_and_creates_no_account(
    client: httpx.AsyncClient, conn: asyncpg.Connection, category: str
) -> None:
    users, events = await count(conn, "app_user"), await count(conn, "auth_event")
    for case, changes in REGISTER_INVALID[category].items():
        body = {
            "email": unique_email("attack"),
            "password": PASSWORD,
            "username": f"u_{uuid.uuid4().hex[:12]}",
            "display_name": "Mallory",
            **changes,
        }
        response = await send_json(client, "POST", REGISTER, without_dropped(body))
        assert_validation_problem(response, case)
    assert await count(conn, "app_user") == users
    assert await count(conn, "auth_event") == events


LOGIN_INVALID: dict[str, dict[str, dict[str, Any]]] = {
    "unknown_fields": {
        "remember_me": {"remember_me": True},
        "user_id": {"user_id": str(uuid.uuid4())},
    },
    "wrong_types": {
        "missing_login": {"login": DROP},
        "missing_password": {"password": DROP},
        "login_int": {"login": 1},
        "login_object": {"login": {"$gt": ""}},
        "password_list": {"password": ["x"]},
        "password_null": {"password": None},
        "device_name_int": {"device_name": 7},
    },
    "empty_and_overlong_strings": {
        "empty_login": {"login": ""},
        "empty_password": {"password": ""},
        "login_over_320": {"login": LONG_EMAIL},
        "device_name_over_100": {"device_name": "d" * 101},
        "device_id_bad_chars": {"device_id": "id with spaces"},
        "platform_over_50": {"platform": "p" * 51},
        "app_version_over_50": {"app_version": "v" * 51},
        "password_over_1024": {"password": "p" * 1025},
        "password_of_about_1_mb": {"password": "p" * 1_000_000},
    },
    "nul_characters": {
        "login": {"login": "<email>\x00"},
        "password": {"password": PASSWORD + "\x00"},
        "device_name": {"device_name": "phone\x00"},
        "device_id": {"device_id": "abc\x00"},
        "platform": {"platform": "ios\x00"},
        "app_version": {"app_version": "1.0\x00"},
    },
}


@pytest.mark.parametrize("category", LOGIN_INVALID)
async def test_login_with_invalid_fields_is_rejected_and_starts_no_session(
    client: httpx.AsyncClient, conn: asyncpg.Connection, category: str
) -> None:
    user = await register(client)
    sessions = await count(conn, "device_session")
    for case, changes in LOGIN_INVALID[category].items():
        body = {"login": user["email"], "password": PASSWORD, **changes}
        if isinstance(body["login"], str):
            body["login"] = body["login"].replace("<email>", user["email"])
        response = await send_json(client, "POST", LOGIN, without_dropped(body))
        assert_validation_problem(response, case)
        assert "set-cookie" not in response.headers, case
    assert await count(conn, "device_session") == sessions


PROFILE_INVALID: dict[str, dict[str, dict[str, Any]]] = {
    "unknown_fields": {
        "unknown_field": {"nickname": "m"},
        "role": {"role": "superadmin"},
        "is_active": {"is_active": False},
        "password_hash": {"password_hash": "x"},
        "id": {"id": str(uuid.uuid4())},
    },
    "wrong_types": {
        "display_name_int": {"display_name": 5},
        "display_name_null": {"display_name": None},
        "username_list": {"username": ["x"]},
        "email_int": {"email": 5, "current_password": PASSWORD},
        "current_password_int": {"email": "new@example.com", "current_password": 1},
    },
    "empty_overlong_and_invalid_strings": {
        "empty_username": {"username": ""},
        "empty_email": {"email": "", "current_password": PASSWORD},
        "display_name_over_100": {"display_name": "d" * 101},
        "username_over_50": {"username": "u" * 51},
        "email_over_320": {"email": LONG_EMAIL, "current_password": PASSWORD},
        "invalid_email": {"email": "not-an-email", "current_password": PASSWORD},
        "username_bad_chars": {"username": "mal lory"},
        "current_password_over_1024": {"email": "new@example.com", "current_password": "p" * 1025},
    },
    "nul_characters": {
        "display_name": {"display_name": "Mal\x00lory"},
        "username": {"username": "mal\x00lory"},
        "email": {"email": "mal\x00lory@example.com", "current_password": PASSWORD},
        "current_password": {"email": "new@example.com", "current_password": PASSWORD + "\x00"},
    },
}


@pytest.mark.parametrize("category", PROFILE_INVALID)
async def test_profile_update_with_invalid_fields_is_rejected_and_changes_nothing(
    client: httpx.AsyncClient, conn: asyncpg.Connection, victim: Device, category: str
) -> None:
    users = await count(conn, "app_user")
    before = await user_row(conn, victim.user_id)
    for case, changes in PROFILE_INVALID[category].items():
        response = await send_json(client, "PATCH", ME, changes, victim.headers)
        assert_validation_problem(response, case)
    assert await user_row(conn, victim.user_id) == before
    assert await count(conn, "app_user") == users


@pytest.mark.parametrize("route", ["register", "login", "profile"])
async def test_malformed_or_non_object_json_is_a_400_problem_and_changes_nothing(
    client: httpx.AsyncClient, conn: asyncpg.Connection, victim: Device, route: str
) -> None:
    method, path, headers = {
        "register": ("POST", REGISTER, {}),
        "login": ("POST", LOGIN, {}),
        "profile": ("PATCH", ME, victim.headers),
    }[route]
    users, sessions = await count(conn, "app_user"), await count(conn, "device_session")
    before = await user_row(conn, victim.user_id)
    for case, raw in MALFORMED_JSON.items():
        response = await send_json(client, method, path, raw, headers)
        body = assert_status(response, 400, case)
        assert body["detail"], case
    for case, value in NOT_AN_OBJECT.items():
        assert_validation_problem(await send_json(client, method, path, value, headers), case)
    assert await count(conn, "app_user") == users
    assert await count(conn, "device_session") == sessions
    assert await user_row(conn, victim.user_id) == before


async def test_json_body_that_is_not_utf8_is_a_400_problem(
    client: httpx.AsyncClient, conn: asyncpg.Connection, victim: Device
) -> None:
    users, sessions = await count(conn, "app_user"), await count(conn, "device_session")
    before = await user_row(conn, victim.user_id)
    for method, path, headers in (
        ("POST", REGISTER, {}),
        ("POST", LOGIN, {}),
        ("PATCH", ME, victim.headers),
    ):
        for case, raw in {
            "latin1": '{"email": "m\xe9l@example.com", "password": "xxxxxxxxxx"}'.encode("latin-1"),
            "ff_fe_bytes": b'{"email": "\xff\xfe@example.com"}',
        }.items():
            response = await send_json(client, method, path, raw, headers)
            assert_status(response, 400, f"{method} {path} {case}")
    assert await count(conn, "app_user") == users
    assert await count(conn, "device_session") == sessions
    assert await user_row(conn, victim.user_id) == before


async def chunks(total: int, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """A body streamed without Content-Length, so only counting its bytes can catch its size."""
    yield b'{"email": "a@example.com", "password": "'
    for _ in range(0, total, size):
        yield b"p" * size
    yield b'"}'


@pytest.mark.parametrize("framing", ["content_length", "chunked"])
async def test_body_over_one_mebibyte_is_a_413_problem(
    client: httpx.AsyncClient, conn: asyncpg.Connection, victim: Device, framing: str
) -> None:
    users, sessions = await count(conn, "app_user"), await count(conn, "device_session")
    before = await user_row(conn, victim.user_id)
    for method, path, headers in (
        ("POST", REGISTER, {}),
        ("POST", LOGIN, {}),
        ("PATCH", ME, victim.headers),
    ):
        content: bytes | AsyncIterator[bytes] = (
            json.dumps({"email": "a@example.com", "password": "p" * OVERSIZED}).encode()
            if framing == "content_length"
            else chunks(OVERSIZED)
        )
        response = await client.request(
            method, path, content=content, headers={"Content-Type": "application/json", **headers}
        )
        body = assert_status(response, 413, f"{method} {path}")
        assert body["detail"]
    assert await count(conn, "app_user") == users
    assert await count(conn, "device_session") == sessions
    assert await user_row(conn, victim.user_id) == before


async def test_duplicate_email_differing_only_in_case_is_a_409_problem(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    email = unique_email("dup")
    await register(client, email=email)
    users = await count(conn, "app_user")
    local, domain = email.split("@")
    for spelling in (
        email,
        email.upper(),
        f"{local.capitalize()}@{domain}",
        f"{local}@{domain.upper()}",
    ):
        response = await client.post(REGISTER, json={"email": spelling, "password": PASSWORD})
        body = assert_status(response, 409, spelling)
        assert "email" in str(body["detail"])
    assert await count(conn, "app_user") == users


async def test_duplicate_username_is_a_409_problem(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    await register(client, username="taken_name")
    users = await count(conn, "app_user")
    for spelling in ("taken_name", "TAKEN_NAME", "Taken_Name"):
        response = await client.post(
            REGISTER, json={"email": unique_email(), "password": PASSWORD, "username": spelling}
        )
        body = assert_status(response, 409, spelling)
        assert "username" in str(body["detail"])
    assert await count(conn, "app_user") == users


async def test_taking_another_users_username_or_email_by_profile_update_is_a_409_problem(
    client: httpx.AsyncClient, conn: asyncpg.Connection, victim: Device
) -> None:
    owner = await register(client, username="owner_name")
    before = await user_row(conn, victim.user_id)
    by_username = await client.patch(ME, json={"username": "Owner_Name"}, headers=victim.headers)
    assert_status(by_username, 409, "username")
    by_email = await client.patch(
        ME,
        json={"email": owner["email"].upper(), "current_password": PASSWORD},
        headers=victim.headers,
    )
    assert_status(by_email, 409, "email")
    assert await user_row(conn, victim.user_id) == before


# --- 5. cross-site login and logout -------------------------------------------------------------


async def test_cross_site_login_is_forbidden_and_starts_no_session(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    user = await register(client)
    sessions = await count(conn, "device_session")
    for case, headers in CROSS_SITE_HEADERS.items():
        as_json = await client.post(
            LOGIN, json={"login": user["email"], "password": PASSWORD}, headers=headers
        )
        # The OAuth2 form for Swagger UI logs in too, so it gets the same check.
        as_form = await client.post(
            TOKEN, data={"username": user["email"], "password": PASSWORD}, headers=headers
        )
        for route, response in (("login", as_json), ("token form", as_form)):
            assert_status(response, 403, f"{route} {case}")
            assert "set-cookie" not in response.headers, f"{route} {case}"
            assert "access_token" not in response.text, f"{route} {case}"
    assert await count(conn, "device_session") == sessions


async def test_cross_site_logout_is_forbidden_and_ends_no_session(
    client: httpx.AsyncClient, conn: asyncpg.Connection, victim: Device
) -> None:
    laptop = await login(client, victim.email)
    before = [await session_state(conn, d.session_id) for d in (victim, laptop)]
    for path in (LOGOUT, LOGOUT_ALL):
        for case, cross_site in CROSS_SITE_HEADERS.items():
            response = await client.post(path, headers={**victim.headers, **cross_site})
            assert_status(response, 403, f"{path} {case}")
            assert "set-cookie" not in response.headers, f"{path} {case}"
    assert [await session_state(conn, d.session_id) for d in (victim, laptop)] == before
    await assert_token_accepted(client, victim)
    await assert_token_accepted(client, laptop)


async def test_same_origin_login_and_logout_are_allowed(client: httpx.AsyncClient) -> None:
    user = await register(client)
    same_origin = {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}
    response = await client.post(
        LOGIN, json={"login": user["email"], "password": PASSWORD}, headers=same_origin
    )
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    logout = await client.post(LOGOUT, headers={**bearer(token), **same_origin})
    assert logout.status_code == 204, logout.text
