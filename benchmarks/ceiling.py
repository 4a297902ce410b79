"""The ceiling: a bare ASGI app (no framework) that does the same job as ours with the least work
that keeps its meaning.

Same endpoints and response shapes as ours for what the benchmark drives: list (first page and
keyset cursor), create, update with If-Match, delta sync, refresh rotation, login. Kept:
PyJWT verification with the same rules (pinned HS256, `at+jwt` header, required claims, aud/iss),
the device-session + active-user check on every request, signed cursors and sync tokens in the
same format, refresh rotation by compare-and-set with reuse detection and audit events, argon2id
with the same parameters in a thread pool at the lowest priority (as ours). Left out: everything a framework adds (routing
tables, DI, middleware, OpenAPI, problem-details plugin, security headers, request logs, rate
limiting). Each request takes one pool connection and, on the hot paths, one round trip: the
session check is folded into the page query / the insert / the update as a CTE, via asyncpg's
prepared-statement cache; releasing the connection costs no reset query.

Run: `python -m benchmarks.ceiling` (reads the same environment as ours).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import re
import secrets
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import parse_qs

import asyncpg
import jwt
import msgspec
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from msgspec import Meta

# --- settings: the same variables and defaults as todo_api/core/config.py ------------------
ENV = os.environ
SECRET = ENV.get("SECRET_KEY", "dev-only-insecure-secret-key-change-me-0123456789").encode()


def key_for(purpose: str) -> bytes:
    return hmac.new(SECRET, purpose.encode(), hashlib.sha256).digest()


SIGNING_KEY = key_for("access-token").hex()
REFRESH_KEY = key_for("refresh-token")
CURSOR_KEY = key_for("cursor")
ACCESS_LIFETIME = timedelta(minutes=int(ENV.get("ACCESS_TOKEN_EXPIRE_MINUTES", "15")))
IDLE = timedelta(days=int(ENV.get("REFRESH_TOKEN_EXPIRE_DAYS", "7")))
MAX_AGE = timedelta(days=int(ENV.get("SESSION_MAX_AGE_DAYS", "30")))
LEEWAY = timedelta(seconds=int(ENV.get("REFRESH_REUSE_LEEWAY_SECONDS", "10")))
SECURE = ENV.get("APP_ENV", "dev") == "prod"
ACCESS_COOKIE = ("__Secure-" if SECURE else "") + "access_token"
REFRESH_COOKIE = ("__Secure-" if SECURE else "") + "refresh_token"
FAILURES_LIMIT, FAILURES_WINDOW = ENV.get("RATE_LIMIT_LOGIN_FAILURES", "10/hour").split("/")
WINDOW_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}[FAILURES_WINDOW]
HASHER = PasswordHasher(
    time_cost=int(ENV.get("ARGON2_TIME_COST", "3")),
    memory_cost=int(ENV.get("ARGON2_MEMORY_KIB", "65536")),
    parallelism=int(ENV.get("ARGON2_PARALLELISM", "1")),
)
REQUIRED = ["exp", "iat", "sub", "sid", "jti", "aud", "iss", "typ"]

# --- shapes (msgspec, the same constraints as todo_api/todos/schemas.py) ---------------------
Title = Annotated[str, Meta(min_length=1, max_length=500, pattern=r"\S")]
Notes = Annotated[str, Meta(max_length=10_000)]
Priority = Annotated[int, Meta(ge=0, le=3)]
DueAt = Annotated[datetime, Meta(tz=True)]
Position = Annotated[float, Meta(ge=-1e15, le=1e15)]


class TodoCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    title: Title
    notes: Notes = ""
    due_at: DueAt | None = None
    priority: Priority = 0
    position: Position = 0.0


class TodoUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    title: Title | msgspec.UnsetType = msgspec.UNSET
    notes: Notes | msgspec.UnsetType = msgspec.UNSET
    due_at: DueAt | msgspec.UnsetType | None = msgspec.UNSET
    priority: Priority | msgspec.UnsetType = msgspec.UNSET
    position: Position | msgspec.UnsetType = msgspec.UNSET


class LoginRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    login: Annotated[str, Meta(min_length=1, max_length=320)]
    password: Annotated[str, Meta(min_length=1, max_length=1024)]
    device_name: Annotated[str, Meta(min_length=1, max_length=100)] | None = None
    device_id: Annotated[str, Meta(min_length=1, max_length=128)] | None = None
    platform: Annotated[str, Meta(min_length=1, max_length=50)] | None = None
    app_version: Annotated[str, Meta(min_length=1, max_length=50)] | None = None


ENCODE = msgspec.json.Encoder().encode
TODO_COLUMNS = (
    "id, title, notes, is_completed, completed_at, due_at, priority, position, "
    "created_at, updated_at, version"
)
TODO_FIELDS = tuple(name.strip() for name in TODO_COLUMNS.split(","))
CHANGE_FIELDS = (*TODO_FIELDS, "deleted_at")
USER_FIELDS = (
    "id",
    "email",
    "username",
    "display_name",
    "role",
    "is_active",
    "created_at",
    "last_login_at",
)
# The device session is live and its user active: folded into every authenticated statement.
SESSION = """s AS (
    SELECT ds."user" AS uid FROM device_session ds JOIN app_user u ON u.id = ds."user"
    WHERE ds.id = $1 AND ds."user" = $2 AND ds.revoked_at IS NULL AND ds.expires_at > now()
      AND u.is_active)"""
LIST_FIRST = f"""WITH {SESSION}
SELECT t.*, t.created_at::text AS sort_key FROM s LEFT JOIN LATERAL (
    SELECT {TODO_COLUMNS} FROM todo WHERE "owner" = s.uid AND deleted_at IS NULL
    ORDER BY created_at, id LIMIT $3) t ON true"""  # noqa: S608 - constant fragments
LIST_AFTER = f"""WITH {SESSION}
SELECT t.*, t.created_at::text AS sort_key FROM s LEFT JOIN LATERAL (
    SELECT {TODO_COLUMNS} FROM todo WHERE "owner" = s.uid AND deleted_at IS NULL
      AND (created_at, id) > ($4::text::timestamptz, $5::text::uuid)
    ORDER BY created_at, id LIMIT $3) t ON true"""  # noqa: S608
CREATE = f"""WITH {SESSION}
INSERT INTO todo (id, "owner", title, notes, due_at, priority, position, created_at,
                  updated_at, is_completed, version)
SELECT $3, s.uid, $4, $5, $6, $7, $8, $9, $9, false, 1 FROM s
RETURNING {TODO_COLUMNS}"""  # noqa: S608
UPDATE = f"""WITH {SESSION}, upd AS (
    UPDATE todo SET
        title = CASE WHEN $5 THEN $6::varchar ELSE title END,
        notes = CASE WHEN $7 THEN $8::text ELSE notes END,
        due_at = CASE WHEN $9 THEN $10::timestamptz ELSE due_at END,
        priority = CASE WHEN $11 THEN $12::smallint ELSE priority END,
        position = CASE WHEN $13 THEN $14::float8 ELSE position END,
        version = version + 1, updated_at = $15
    FROM s WHERE todo.id = $3 AND todo."owner" = s.uid AND todo.deleted_at IS NULL
      AND ($4::int IS NULL OR todo.version = $4)
    RETURNING {", ".join("todo." + f for f in TODO_FIELDS)})
SELECT (SELECT count(*) FROM s) AS authed, upd.* FROM (SELECT 1) one
LEFT JOIN upd ON true"""  # noqa: S608
CURRENT_VERSION = 'SELECT version FROM todo WHERE id = $1 AND "owner" = $2 AND deleted_at IS NULL'
_SYNC = f"""WITH {SESSION},
h AS (SELECT coalesce((SELECT purged_through_xid FROM sync_horizon WHERE id = 1), 0) AS p)
SELECT {{token}} AS token_xid, h.p AS purged, t.* FROM s CROSS JOIN h LEFT JOIN LATERAL (
    SELECT {TODO_COLUMNS}, deleted_at, change_xid FROM todo
    WHERE "owner" = s.uid AND {{where}} ORDER BY change_xid, id LIMIT $3) t ON true"""  # noqa: S608
SNAPSHOT = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
SYNC_ALL = _SYNC.format(token=SNAPSHOT, where="deleted_at IS NULL")
SYNC_SINCE = _SYNC.format(token=SNAPSHOT, where="change_xid >= $4")
SYNC_PAGE = _SYNC.format(
    token="$6::bigint",
    where="($4::bigint IS NULL OR change_xid >= $4) AND (change_xid, id) > ($5, $7::text::uuid)"
    " AND ($4::bigint IS NOT NULL OR deleted_at IS NULL)",
)
REFRESH_STATE = """SELECT ds."user", ds.refresh_counter, ds.refresh_salt, ds.rotated_at,
    ds.expires_at, ds.last_used_at, ds.revoked_at, u.is_active
FROM device_session ds JOIN app_user u ON u.id = ds."user" WHERE ds.id = $1"""
ROTATE = """WITH upd AS (
    UPDATE device_session SET refresh_counter = refresh_counter + 1, rotated_at = $3,
        last_used_at = $3
    WHERE id = $1 AND refresh_counter = $2 AND revoked_at IS NULL
    RETURNING refresh_counter, "user"),
ev AS (INSERT INTO auth_event (id, user_id, session_id, type, ip, user_agent, created_at, detail)
    SELECT $4, upd."user", $1, 'refreshed', $5, $6, $3, '{}'::jsonb FROM upd)
SELECT refresh_counter FROM upd"""
REVOKE_REUSE = """WITH upd AS (
    UPDATE device_session SET revoked_at = $2, revoke_reason = 'refresh_reuse'
    WHERE id = $1 AND revoked_at IS NULL RETURNING "user")
INSERT INTO auth_event (id, user_id, session_id, type, ip, user_agent, created_at, detail)
SELECT $3, upd."user", $1, 'refresh_reuse_detected', $4, $5, $2, $6::jsonb FROM upd"""
LOGIN_USER = """SELECT u.id, u.email, u.username, u.display_name, u.role, u.is_active,
    u.created_at, u.last_login_at, u.password_hash,
    (SELECT count(*) FROM auth_event e WHERE e.user_id = u.id AND e.created_at > $2
       AND e.type = 'login_failed') AS failures
FROM app_user u WHERE {column} = $1"""
LOGIN_BY_EMAIL = LOGIN_USER.format(column="u.email")
LOGIN_BY_USERNAME = LOGIN_USER.format(column="u.username")
AUDIT = """INSERT INTO auth_event (id, user_id, session_id, type, ip, user_agent, created_at, detail)
VALUES ($1, $2, $3, $4, $5, $6, now(), $7::jsonb)"""
START_SESSION = """WITH ses AS (
    INSERT INTO device_session (id, "user", device_name, device_id, platform, app_version,
        user_agent, ip, created_at, last_used_at, rotated_at, expires_at, refresh_counter,
        refresh_salt)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $9, $10, 0, $11) RETURNING id),
usr AS (UPDATE app_user SET last_login_at = $9 WHERE id = $2),
ev AS (INSERT INTO auth_event (id, user_id, session_id, type, ip, user_agent, created_at, detail)
    VALUES ($12, $2, $1, 'login_succeeded', $8, $7, $9, '{}'::jsonb))
SELECT id FROM ses"""
DEVICE_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"
REPLACE_DEVICE = """UPDATE device_session SET revoked_at = $3, revoke_reason = 'replaced'
WHERE "user" = $1 AND device_id = $2 AND revoked_at IS NULL"""

POOL: asyncpg.Pool | None = None


def _low_priority() -> None:
    """Hashing threads yield the CPU to the event loop (Linux per-thread nice), as ours do."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


HASH_POOL = ThreadPoolExecutor(
    max_workers=os.cpu_count() or 2, thread_name_prefix="argon2", initializer=_low_priority
)
DUMMY_HASH = HASHER.hash(os.urandom(16).hex())
STRONG_ETAG = re.compile(r'^"(\d{1,9})"$')
JSON = (b"content-type", b"application/json")
PROBLEM = (b"content-type", b"application/problem+json")


class HTTPError(Exception):
    def __init__(self, status: int, detail: str, headers: list[tuple[bytes, bytes]] = ()):  # type: ignore[assignment]
        self.status, self.detail, self.headers = status, detail, list(headers)


# --- tokens and cursors (the formats of todo_api/auth/tokens.py and todo_api/core/pagination.py)
def decode_access(token: str) -> tuple[uuid.UUID, uuid.UUID]:
    try:
        header = jwt.get_unverified_header(token)
        if set(header) - {"alg", "typ"} or header.get("typ") != "at+jwt":
            raise HTTPError(401, "Invalid token.")
        claims = jwt.decode(
            token,
            SIGNING_KEY,
            algorithms=["HS256"],
            audience="todo-api",
            issuer="todo-api",
            leeway=30,
            options={"require": REQUIRED, "strict_aud": True},
        )
        if claims.get("typ") != "access":
            raise HTTPError(401, "Invalid token.")
        return uuid.UUID(claims["sub"]), uuid.UUID(claims["sid"])
    except (jwt.PyJWTError, ValueError, TypeError, AttributeError):
        raise HTTPError(401, "Invalid token.") from None


def issue_access(user_id: uuid.UUID, session_id: uuid.UUID) -> str:
    now = datetime.now(UTC)
    claims = {
        "sub": str(user_id),
        "sid": str(session_id),
        "typ": "access",
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + ACCESS_LIFETIME,
        "iss": "todo-api",
        "aud": "todo-api",
    }
    return jwt.encode(claims, SIGNING_KEY, algorithm="HS256", headers={"typ": "at+jwt"})


def refresh_mac(session_id: uuid.UUID, counter: int, salt: str) -> str:
    digest = hmac.new(REFRESH_KEY, f"{session_id}|{counter}|{salt}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def cursor_mac(scope: str, payload: bytes) -> bytes:
    return hmac.new(CURSOR_KEY, scope.encode() + b"\x00" + payload, hashlib.sha256).digest()[:16]


def encode_cursor(scope: str, position: list[Any]) -> str:
    payload = ENCODE(position)
    return base64.urlsafe_b64encode(cursor_mac(scope, payload) + payload).rstrip(b"=").decode()


def decode_cursor(scope: str, cursor: str, size: int) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        mac, payload = raw[:16], raw[16:]
        if len(cursor) > 512 or not hmac.compare_digest(mac, cursor_mac(scope, payload)):
            raise ValueError
        position = msgspec.json.decode(payload)
        if not isinstance(position, list) or len(position) != size:
            raise ValueError
        return position
    except ValueError:
        raise HTTPError(400, "Invalid cursor.") from None


# --- HTTP plumbing ---------------------------------------------------------------------------
def header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def cookie(scope: dict[str, Any], name: str) -> str | None:
    raw = header(scope, b"cookie") or ""
    for part in raw.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def caller(scope: dict[str, Any]) -> tuple[uuid.UUID, uuid.UUID]:
    auth = header(scope, b"authorization") or ""
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token:
        token = cookie(scope, ACCESS_COOKIE) or ""
        if not token:
            raise HTTPError(401, "Authentication is required: send a valid access token.")
    return decode_access(token)


def query(scope: dict[str, Any]) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(scope["query_string"].decode("latin-1")).items()}


def int_param(params: dict[str, str], name: str, default: int, high: int) -> int:
    try:
        value = int(params.get(name, default))
    except ValueError:
        raise HTTPError(400, f"`{name}` must be an integer.") from None
    if not 1 <= value <= high:
        raise HTTPError(400, f"`{name}` must be 1..{high}.")
    return value


async def read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def respond(
    send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [JSON, (b"content-length", b"%d" % len(body)), *(headers or ())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def auth_cookies(access: str, refresh: str, expires_at: datetime) -> list[tuple[bytes, bytes]]:
    secure = "; Secure" if SECURE else ""
    remaining = max(int((expires_at - datetime.now(UTC)).total_seconds()), 0)
    return [
        (
            b"set-cookie",
            f"{ACCESS_COOKIE}={access}; Path=/; Max-Age={int(ACCESS_LIFETIME.total_seconds())}; "
            f"HttpOnly; SameSite=Strict{secure}".encode(),
        ),
        (
            b"set-cookie",
            f"{REFRESH_COOKIE}={refresh}; Path=/api/v1/auth; Max-Age={remaining}; HttpOnly; "
            f"SameSite=Strict{secure}".encode(),
        ),
        (b"cache-control", b"no-store"),
    ]


def todo_out(row: asyncpg.Record) -> dict[str, Any]:
    return {name: row[name] for name in TODO_FIELDS}


def client(scope: dict[str, Any]) -> tuple[str, str]:
    peer = scope.get("client")
    return (peer[0] if peer else ""), (header(scope, b"user-agent") or "")[:512]


# --- handlers --------------------------------------------------------------------------------
async def list_todos(scope: dict[str, Any]) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    user_id, session_id = caller(scope)
    params = query(scope)
    limit = int_param(params, "limit", 20, 100)
    scope_key = f"todos:{user_id}:created_at:None:None:None:None"
    assert POOL is not None
    async with POOL.acquire() as connection:
        if cursor := params.get("cursor"):
            key, last_id = decode_cursor(scope_key, cursor, 2)
            rows = await connection.fetch(
                LIST_AFTER, session_id, user_id, limit + 1, str(key), str(last_id)
            )
        else:
            rows = await connection.fetch(LIST_FIRST, session_id, user_id, limit + 1)
    if not rows:
        raise HTTPError(401, "Authentication is required: send a valid access token.")
    rows = [row for row in rows if row["id"] is not None]
    page = rows[:limit]
    next_cursor = (
        encode_cursor(scope_key, [page[-1]["sort_key"], str(page[-1]["id"])])
        if len(rows) > limit
        else None
    )
    body = {
        "data": [todo_out(row) for row in page],
        "meta": {"count": len(page), "next_cursor": next_cursor},
    }
    return 200, ENCODE(body), []


async def create_todo(
    scope: dict[str, Any], receive: Any
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    user_id, session_id = caller(scope)
    try:
        data = msgspec.json.decode(await read_body(receive), type=TodoCreate)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise HTTPError(400, str(exc)) from None
    moment = datetime.now(UTC)
    assert POOL is not None
    async with POOL.acquire() as connection:
        row = await connection.fetchrow(
            CREATE,
            session_id,
            user_id,
            uuid.uuid4(),
            data.title.strip(),
            data.notes,
            data.due_at,
            data.priority,
            data.position,
            moment,
        )
    if row is None:
        raise HTTPError(401, "Authentication is required: send a valid access token.")
    headers = [
        (b"location", f"/api/v1/todos/{row['id']}".encode()),
        (b"etag", f'"{row["version"]}"'.encode()),
    ]
    return 201, ENCODE(todo_out(row)), headers


async def update_todo(
    scope: dict[str, Any], receive: Any, todo_id: uuid.UUID
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    user_id, session_id = caller(scope)
    if_match = header(scope, b"if-match")
    expected = None
    if if_match is not None and if_match.strip() != "*":
        match = STRONG_ETAG.match(if_match.strip())
        if match is None:
            raise HTTPError(400, "If-Match must be one strong ETag.")
        expected = int(match.group(1))
    try:
        data = msgspec.json.decode(await read_body(receive), type=TodoUpdate)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise HTTPError(400, str(exc)) from None
    unset = msgspec.UNSET
    title = data.title.strip() if data.title is not unset else None
    assert POOL is not None
    async with POOL.acquire() as connection:
        row = await connection.fetchrow(
            UPDATE,
            session_id,
            user_id,
            todo_id,
            expected,
            data.title is not unset,
            title,
            data.notes is not unset,
            data.notes if data.notes is not unset else None,
            data.due_at is not unset,
            data.due_at if data.due_at is not unset else None,
            data.priority is not unset,
            data.priority if data.priority is not unset else None,
            data.position is not unset,
            data.position if data.position is not unset else None,
            datetime.now(UTC),
        )
        assert row is not None
        if not row["authed"]:
            raise HTTPError(401, "Authentication is required: send a valid access token.")
        if row["id"] is None:
            current = await connection.fetchval(CURRENT_VERSION, todo_id, user_id)
            if current is None:
                raise HTTPError(404, "No such to-do.")
            raise HTTPError(
                412, "The to-do changed since you read it.", [(b"etag", f'"{current}"'.encode())]
            )
    return 200, ENCODE(todo_out(row)), [(b"etag", f'"{row["version"]}"'.encode())]


async def changes(scope: dict[str, Any]) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    user_id, session_id = caller(scope)
    params = query(scope)
    limit = int_param(params, "limit", 100, 500)
    token_scope, page_scope = f"sync:{user_id}", f"sync-page:{user_id}"
    assert POOL is not None
    async with POOL.acquire() as connection:
        if cursor := params.get("cursor"):
            since, token, last_xid, last_id = decode_cursor(page_scope, cursor, 4)
            rows = await connection.fetch(
                SYNC_PAGE, session_id, user_id, limit + 1, since, int(last_xid), token, last_id
            )
        elif since_token := params.get("since"):
            since = int(decode_cursor(token_scope, since_token, 1)[0])
            rows = await connection.fetch(SYNC_SINCE, session_id, user_id, limit + 1, since)
        else:
            since = None
            rows = await connection.fetch(SYNC_ALL, session_id, user_id, limit + 1)
    if not rows:
        raise HTTPError(401, "Authentication is required: send a valid access token.")
    token_xid, purged = rows[0]["token_xid"], rows[0]["purged"]
    if since is not None and since <= purged:
        raise HTTPError(410, "Deletions since this sync token have been purged; sync again.")
    rows = [row for row in rows if row["id"] is not None]
    page = rows[:limit]
    data = [
        {**{name: row[name] for name in CHANGE_FIELDS}, "deleted": row["deleted_at"] is not None}
        for row in page
    ]
    if len(rows) > limit:
        last = page[-1]
        position = [since, token_xid, last["change_xid"], str(last["id"])]
        meta = {"count": len(page), "next_cursor": encode_cursor(page_scope, position)}
        sync_token = None
    else:
        meta = {"count": len(page), "next_cursor": None}
        sync_token = encode_cursor(token_scope, [token_xid])
    return 200, ENCODE({"data": data, "meta": meta, "sync_token": sync_token}), []


async def refresh(scope: dict[str, Any]) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    invalid = HTTPError(401, "The refresh token is missing, invalid or expired; log in again.")
    try:
        raw_id, raw_counter, mac = (cookie(scope, REFRESH_COOKIE) or "").split(".")
        session_id, counter = uuid.UUID(raw_id), int(raw_counter)
    except ValueError:
        raise invalid from None
    if counter < 0 or not raw_counter.isdigit() or len(mac) != 43:
        raise invalid
    ip, agent = client(scope)
    moment = datetime.now(UTC)
    assert POOL is not None
    async with POOL.acquire() as connection:
        row = await connection.fetchrow(REFRESH_STATE, session_id)
        if row is None or not hmac.compare_digest(
            refresh_mac(session_id, counter, row["refresh_salt"]), mac
        ):
            raise invalid

        def refreshable(row: asyncpg.Record) -> bool:
            return bool(
                row["revoked_at"] is None
                and row["expires_at"] > moment
                and row["last_used_at"] > moment - IDLE
                and row["is_active"]
            )

        if not refreshable(row):
            raise invalid
        current = row["refresh_counter"]
        if counter == current:
            rotated = await connection.fetchval(
                ROTATE, session_id, counter, moment, uuid.uuid4(), ip, agent
            )
            if rotated is not None:
                current = rotated
            else:
                row = await connection.fetchrow(REFRESH_STATE, session_id)
                if row is None or not refreshable(row):
                    raise invalid
                current = row["refresh_counter"]
                if not (counter == current - 1 and moment - row["rotated_at"] <= LEEWAY):
                    raise invalid
        elif counter == current - 1 and moment - row["rotated_at"] <= LEEWAY:
            pass  # racing tabs: the current token again
        else:
            if counter < current:
                detail = ENCODE({"presented_counter": counter, "current_counter": current})
                await connection.execute(
                    REVOKE_REUSE, session_id, moment, uuid.uuid4(), ip, agent, detail.decode()
                )
            raise invalid
    access = issue_access(row["user"], session_id)
    token = f"{session_id}.{current}.{refresh_mac(session_id, current, row['refresh_salt'])}"
    body = {
        "access_token": access,
        "expires_in": int(ACCESS_LIFETIME.total_seconds()),
        "session_id": session_id,
        "token_type": "bearer",
    }
    return 200, ENCODE(body), auth_cookies(access, token, row["expires_at"])


def _verify(stored: str | None, password: str) -> tuple[bool, bool]:
    try:
        ok = HASHER.verify(stored or DUMMY_HASH, password) and bool(stored)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False, False
    return ok, bool(ok and stored and HASHER.check_needs_rehash(stored))


def device_name(user_agent: str) -> str:
    ua = user_agent.lower()
    for key, name in (("curl/", "curl"), ("python-httpx", "httpx"), ("okhttp", "Android app")):
        if key in ua:
            return name
    return "Unknown device"


async def login(
    scope: dict[str, Any], receive: Any
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    try:
        data = msgspec.json.decode(await read_body(receive), type=LoginRequest)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise HTTPError(400, str(exc)) from None
    value = data.login.strip().lower()
    ip, agent = client(scope)
    since = datetime.now(UTC) - timedelta(seconds=WINDOW_SECONDS)
    assert POOL is not None
    async with POOL.acquire() as connection:
        row = await connection.fetchrow(
            LOGIN_BY_EMAIL if "@" in value else LOGIN_BY_USERNAME, value, since
        )
        if row is not None and row["failures"] >= int(FAILURES_LIMIT):
            raise HTTPError(429, "Too many failed logins for this account.")
    ok, rehash = await asyncio.get_running_loop().run_in_executor(
        HASH_POOL, _verify, row["password_hash"] if row else None, data.password
    )
    async with POOL.acquire() as connection:
        if row is None or not ok or not row["is_active"]:
            detail = {"reason": "unknown_account" if row is None else "bad_password"}
            await connection.execute(
                AUDIT,
                uuid.uuid4(),
                row["id"] if row else None,
                None,
                "login_failed",
                ip,
                agent,
                ENCODE(detail).decode(),
            )
            raise HTTPError(401, "Invalid login or password.")
        if rehash:
            new_hash = await asyncio.get_running_loop().run_in_executor(
                HASH_POOL, HASHER.hash, data.password
            )
            await connection.execute(
                "UPDATE app_user SET password_hash = $1 WHERE id = $2", new_hash, row["id"]
            )
        moment = datetime.now(UTC)
        session_id, salt, expires_at = uuid.uuid4(), secrets.token_hex(16), moment + MAX_AGE
        async with connection.transaction():
            if data.device_id is not None:
                await connection.execute(DEVICE_LOCK, f"device:{row['id']}:{data.device_id}")
                await connection.execute(REPLACE_DEVICE, row["id"], data.device_id, moment)
            await connection.fetchval(
                START_SESSION,
                session_id,
                row["id"],
                data.device_name or device_name(agent),
                data.device_id,
                data.platform,
                data.app_version,
                agent,
                ip,
                moment,
                expires_at,
                salt,
                uuid.uuid4(),
            )
    access = issue_access(row["id"], session_id)
    token = f"{session_id}.0.{refresh_mac(session_id, 0, salt)}"
    user = {name: row[name] for name in USER_FIELDS}
    user["last_login_at"] = moment
    body = {
        "access_token": access,
        "expires_in": int(ACCESS_LIFETIME.total_seconds()),
        "session_id": session_id,
        "token_type": "bearer",
        "user": user,
    }
    return 200, ENCODE(body), auth_cookies(access, token, expires_at)


# --- the ASGI app ----------------------------------------------------------------------------
TODO_PATH = re.compile(r"^/api/v1/todos/([0-9a-fA-F-]{36})$")


async def route(
    scope: dict[str, Any], receive: Any
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    path, method = scope["path"], scope["method"]
    if path == "/api/v1/todos":
        if method == "GET":
            return await list_todos(scope)
        if method == "POST":
            return await create_todo(scope, receive)
    elif path == "/api/v1/todos/changes" and method == "GET":
        return await changes(scope)
    elif path == "/api/v1/auth/refresh" and method == "POST":
        return await refresh(scope)
    elif path == "/api/v1/auth/login" and method == "POST":
        return await login(scope, receive)
    elif path == "/health":
        return 200, b'{"status":"ok"}', []
    elif method == "PATCH" and (match := TODO_PATH.match(path)):
        try:
            todo_id = uuid.UUID(match.group(1))
        except ValueError:
            raise HTTPError(404, "Nothing exists at this path.") from None
        return await update_todo(scope, receive, todo_id)
    raise HTTPError(404, "Nothing exists at this path.")


async def keep_session(_: asyncpg.Connection) -> None:
    return None


async def lifespan(receive: Any, send: Any) -> None:
    global POOL
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            POOL = await asyncpg.create_pool(
                ENV["DATABASE_URL"],
                min_size=int(ENV.get("DB_POOL_MIN", "2")),
                max_size=int(ENV.get("DB_POOL_MAX", "10")),
                # No per-release `RESET ALL; UNLISTEN *; ...` round trip: nothing here changes
                # session state (asyncpg still rolls back a transaction left open).
                reset=keep_session,
            )
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if POOL is not None:
                await POOL.close()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    try:
        status, body, headers = await route(scope, receive)
    except HTTPError as exc:
        problem = ENCODE({"title": str(exc.status), "status": exc.status, "detail": exc.detail})
        await send(
            {
                "type": "http.response.start",
                "status": exc.status,
                "headers": [PROBLEM, (b"content-length", b"%d" % len(problem)), *exc.headers],
            }
        )
        await send({"type": "http.response.body", "body": problem})
        return
    await respond(send, status, body, headers)


def main() -> None:
    import uvicorn

    # The options `python -m todo_api serve` passes (todo_api/ops/cli.py), but no access log.
    uvicorn.run(
        "benchmarks.ceiling:app",
        host=ENV.get("HOST", "127.0.0.1"),
        port=int(ENV.get("PORT", "8000")),
        workers=int(ENV.get("WEB_CONCURRENCY", "1")),
        proxy_headers=False,
        forwarded_allow_ips="",
        server_header=False,
        access_log=False,
        timeout_graceful_shutdown=30,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
