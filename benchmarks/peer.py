"""The typical peer: the same job written the way typical FastAPI to-do backends are written.

FastAPI + pydantic v2 + SQLAlchemy 2 async (asyncpg driver): ORM models mapped onto the
project's existing tables, a per-request `AsyncSession` from a dependency, an OAuth2 bearer
dependency that decodes the JWT and loads the device session with its user, `response_model`s
built from ORM objects (`from_attributes`), commit-then-refresh on writes, SQLAlchemy's
`version_id_col` for optimistic concurrency. Same endpoints, shapes, JWT rules, cursor and
refresh-token formats, argon2 parameters (hashing in Starlette's thread pool) and pool size (10)
as ours. uvicorn with the same options as ours and its default access log (ours logs one line
per request too).

Run: `python -m benchmarks.peer` (reads the same environment as ours).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from fastapi import Cookie, Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.security import OAuth2PasswordBearer
from pydantic import BaseModel, ConfigDict, Field, computed_field
from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    SmallInteger,
    String,
    Text,
    func,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, joinedload, mapped_column, relationship
from sqlalchemy.schema import FetchedValue


class Settings:
    """Read once from the environment, like any BaseSettings class would."""

    def __init__(self) -> None:
        env = os.environ
        secret = env.get("SECRET_KEY", "dev-only-insecure-secret-key-change-me-0123456789")
        derive = lambda purpose: hmac.new(secret.encode(), purpose.encode(), hashlib.sha256)  # noqa: E731
        self.jwt_secret = derive("access-token").hexdigest()
        self.refresh_key = derive("refresh-token").digest()
        self.cursor_key = derive("cursor").digest()
        self.database_url = env["DATABASE_URL"].replace("postgresql://", "postgresql+asyncpg://")
        self.pool_size = int(env.get("DB_POOL_MAX", "10"))
        self.access_minutes = int(env.get("ACCESS_TOKEN_EXPIRE_MINUTES", "15"))
        self.idle = timedelta(days=int(env.get("REFRESH_TOKEN_EXPIRE_DAYS", "7")))
        self.max_age = timedelta(days=int(env.get("SESSION_MAX_AGE_DAYS", "30")))
        self.leeway = timedelta(seconds=int(env.get("REFRESH_REUSE_LEEWAY_SECONDS", "10")))
        self.secure = env.get("APP_ENV", "dev") == "prod"
        limit, unit = env.get("RATE_LIMIT_LOGIN_FAILURES", "10/hour").split("/")
        self.failures_limit = int(limit)
        self.failures_window = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}[unit]
        self.argon2 = (
            int(env.get("ARGON2_TIME_COST", "3")),
            int(env.get("ARGON2_MEMORY_KIB", "65536")),
            int(env.get("ARGON2_PARALLELISM", "1")),
        )


settings = Settings()
prefix = "__Secure-" if settings.secure else ""
ACCESS_COOKIE, REFRESH_COOKIE = f"{prefix}access_token", f"{prefix}refresh_token"
hasher = PasswordHasher(
    time_cost=settings.argon2[0], memory_cost=settings.argon2[1], parallelism=settings.argon2[2]
)
DUMMY_HASH = hasher.hash(os.urandom(16).hex())

# --- database --------------------------------------------------------------------------------
engine = create_async_engine(
    settings.database_url, pool_size=settings.pool_size, max_overflow=0, pool_pre_ping=False
)
SessionLocal = async_sessionmaker(engine, expire_on_commit=False)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "app_user"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    username: Mapped[str | None] = mapped_column(String(50), unique=True)
    display_name: Mapped[str] = mapped_column(String(100), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20), default="user")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    password_changed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DeviceSession(Base):
    __tablename__ = "device_session"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column("user", ForeignKey("app_user.id"))
    device_name: Mapped[str] = mapped_column(String(100))
    device_id: Mapped[str | None] = mapped_column(String(128))
    platform: Mapped[str | None] = mapped_column(String(50))
    app_version: Mapped[str | None] = mapped_column(String(50))
    user_agent: Mapped[str] = mapped_column(String(512), default="")
    ip: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    refresh_counter: Mapped[int] = mapped_column(Integer, default=0)
    refresh_salt: Mapped[str] = mapped_column(String(64))
    rotated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoke_reason: Mapped[str | None] = mapped_column(String(40))
    user: Mapped[User] = relationship(lazy="raise")


class AuthEvent(Base):
    __tablename__ = "auth_event"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID | None]
    session_id: Mapped[uuid.UUID | None]
    type: Mapped[str] = mapped_column(String(40))
    ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(512), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)


class Todo(Base):
    __tablename__ = "todo"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    owner_id: Mapped[uuid.UUID] = mapped_column("owner", ForeignKey("app_user.id"))
    title: Mapped[str] = mapped_column(String(500))
    notes: Mapped[str] = mapped_column(Text, default="")
    is_completed: Mapped[bool] = mapped_column(Boolean, default=False)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    priority: Mapped[int] = mapped_column(SmallInteger, default=0)
    position: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(Integer)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set by the database's trigger on every write.
    change_xid: Mapped[int] = mapped_column(
        BigInteger, server_default=FetchedValue(), server_onupdate=FetchedValue()
    )
    __mapper_args__ = {"version_id_col": version}


class SyncHorizon(Base):
    __tablename__ = "sync_horizon"
    id: Mapped[int] = mapped_column(primary_key=True)
    purged_through_xid: Mapped[int] = mapped_column(BigInteger)


async def get_db() -> AsyncIterator[AsyncSession]:
    async with SessionLocal() as session:
        yield session


# --- schemas ---------------------------------------------------------------------------------
class TodoCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=500, pattern=r"\S")
    notes: str = Field(default="", max_length=10_000)
    due_at: datetime | None = None
    priority: int = Field(default=0, ge=0, le=3)
    position: float = Field(default=0.0, ge=-1e15, le=1e15)


class TodoUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str | None = Field(default=None, min_length=1, max_length=500, pattern=r"\S")
    notes: str | None = Field(default=None, max_length=10_000)
    due_at: datetime | None = None
    priority: int | None = Field(default=None, ge=0, le=3)
    position: float | None = Field(default=None, ge=-1e15, le=1e15)


class TodoOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    title: str
    notes: str
    is_completed: bool
    completed_at: datetime | None
    due_at: datetime | None
    priority: int
    position: float
    created_at: datetime
    updated_at: datetime
    version: int


class TodoChange(TodoOut):
    deleted_at: datetime | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None


class PageMeta(BaseModel):
    count: int
    next_cursor: str | None = None


class TodoPage(BaseModel):
    data: list[TodoOut]
    meta: PageMeta


class ChangesPage(BaseModel):
    data: list[TodoChange]
    meta: PageMeta
    sync_token: str | None


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    email: str
    username: str | None
    display_name: str
    role: str
    is_active: bool
    created_at: datetime
    last_login_at: datetime | None = None


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    login: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024)
    device_name: str | None = Field(default=None, min_length=1, max_length=100)
    device_id: str | None = Field(default=None, min_length=1, max_length=128)
    platform: str | None = Field(default=None, min_length=1, max_length=50)
    app_version: str | None = Field(default=None, min_length=1, max_length=50)


class TokenResponse(BaseModel):
    access_token: str
    expires_in: int
    session_id: uuid.UUID
    token_type: str = "bearer"


class LoginResponse(TokenResponse):
    user: UserOut


# --- security --------------------------------------------------------------------------------
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)
credentials_exception = HTTPException(
    status_code=401,
    detail="Authentication is required: send a valid access token.",
    headers={"WWW-Authenticate": "Bearer"},
)


def create_access_token(user_id: uuid.UUID, session_id: uuid.UUID) -> str:
    now = datetime.now(UTC)
    payload = {
        "sub": str(user_id),
        "sid": str(session_id),
        "typ": "access",
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + timedelta(minutes=settings.access_minutes),
        "iss": "todo-api",
        "aud": "todo-api",
    }
    return jwt.encode(payload, settings.jwt_secret, algorithm="HS256", headers={"typ": "at+jwt"})


def decode_access_token(token: str) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
        if set(header) - {"alg", "typ"} or header.get("typ") != "at+jwt":
            raise credentials_exception
        payload: dict[str, Any] = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=["HS256"],
            audience="todo-api",
            issuer="todo-api",
            leeway=30,
            options={
                "require": ["exp", "iat", "sub", "sid", "jti", "aud", "iss", "typ"],
                "strict_aud": True,
            },
        )
    except jwt.PyJWTError:
        raise credentials_exception from None
    if payload.get("typ") != "access":
        raise credentials_exception
    return payload


async def get_current_user(
    request: Request,
    token: Annotated[str | None, Depends(oauth2_scheme)],
    db: Annotated[AsyncSession, Depends(get_db)],
) -> User:
    token = token or request.cookies.get(ACCESS_COOKIE)
    if not token:
        raise credentials_exception
    payload = decode_access_token(token)
    try:
        user_id, session_id = uuid.UUID(payload["sub"]), uuid.UUID(payload["sid"])
    except (ValueError, TypeError):
        raise credentials_exception from None
    device = await db.scalar(
        select(DeviceSession)
        .options(joinedload(DeviceSession.user))
        .where(DeviceSession.id == session_id)
    )
    if (
        device is None
        or device.user_id != user_id
        or device.revoked_at is not None
        or device.expires_at <= datetime.now(UTC)
        or not device.user.is_active
    ):
        raise credentials_exception
    return device.user


CurrentUser = Annotated[User, Depends(get_current_user)]
DB = Annotated[AsyncSession, Depends(get_db)]


def refresh_mac(session_id: uuid.UUID, counter: int, salt: str) -> str:
    message = f"{session_id}|{counter}|{salt}".encode()
    digest = hmac.new(settings.refresh_key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def set_auth_cookies(response: Response, access: str, session: DeviceSession, counter: int) -> None:
    remaining = int((session.expires_at - datetime.now(UTC)).total_seconds())
    common: dict[str, Any] = {"httponly": True, "secure": settings.secure, "samesite": "strict"}
    response.set_cookie(
        ACCESS_COOKIE, access, max_age=settings.access_minutes * 60, path="/", **common
    )
    refresh = f"{session.id}.{counter}.{refresh_mac(session.id, counter, session.refresh_salt)}"
    response.set_cookie(
        REFRESH_COOKIE, refresh, max_age=max(remaining, 0), path="/api/v1/auth", **common
    )
    response.headers["Cache-Control"] = "no-store"


# --- cursors (signed, bound to one list) -----------------------------------------------------
def _cursor_mac(scope: str, payload: bytes) -> bytes:
    return hmac.new(settings.cursor_key, scope.encode() + b"\x00" + payload, "sha256").digest()[:16]


def encode_cursor(scope: str, position: list[Any]) -> str:
    payload = json.dumps(position, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(_cursor_mac(scope, payload) + payload).rstrip(b"=").decode()


def decode_cursor(scope: str, cursor: str, size: int) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        if not hmac.compare_digest(raw[:16], _cursor_mac(scope, raw[16:])):
            raise ValueError
        position = json.loads(raw[16:])
        if not isinstance(position, list) or len(position) != size:
            raise ValueError
        return position
    except ValueError:
        raise HTTPException(status_code=400, detail="Invalid cursor.") from None


# --- routes ----------------------------------------------------------------------------------
@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield
    await engine.dispose()


app = FastAPI(title="todo-api (FastAPI peer)", lifespan=lifespan)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/api/v1/todos", response_model=TodoPage)
async def list_todos(
    user: CurrentUser,
    db: DB,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Any:
    scope = f"todos:{user.id}:created_at"
    stmt = select(Todo).where(Todo.owner_id == user.id, Todo.deleted_at.is_(None))
    if cursor:
        created_at, last_id = decode_cursor(scope, cursor, 2)
        stmt = stmt.where(
            tuple_(Todo.created_at, Todo.id)
            > (datetime.fromisoformat(created_at), uuid.UUID(last_id))
        )
    stmt = stmt.order_by(Todo.created_at, Todo.id).limit(limit + 1)
    todos = (await db.scalars(stmt)).all()
    page = todos[:limit]
    next_cursor = None
    if len(todos) > limit:
        next_cursor = encode_cursor(scope, [page[-1].created_at.isoformat(), str(page[-1].id)])
    return {"data": page, "meta": {"count": len(page), "next_cursor": next_cursor}}


@app.post("/api/v1/todos", response_model=TodoOut, status_code=201)
async def create_todo(data: TodoCreate, user: CurrentUser, db: DB, response: Response) -> Any:
    now = datetime.now(UTC)
    todo = Todo(
        **data.model_dump(),
        owner_id=user.id,
        created_at=now,
        updated_at=now,
    )
    todo.title = todo.title.strip()
    db.add(todo)
    await db.commit()
    await db.refresh(todo)
    response.headers["Location"] = f"/api/v1/todos/{todo.id}"
    response.headers["ETag"] = f'"{todo.version}"'
    return todo


ETAG = re.compile(r'^"(\d{1,9})"$')


@app.patch("/api/v1/todos/{todo_id}", response_model=TodoOut)
async def update_todo(
    todo_id: uuid.UUID,
    data: TodoUpdate,
    user: CurrentUser,
    db: DB,
    response: Response,
    if_match: Annotated[str | None, Header(max_length=200)] = None,
) -> Any:
    todo = await db.scalar(
        select(Todo).where(Todo.id == todo_id, Todo.owner_id == user.id, Todo.deleted_at.is_(None))
    )
    if todo is None:
        raise HTTPException(status_code=404, detail="No such to-do.")
    if if_match is not None and if_match.strip() != "*":
        match = ETAG.match(if_match.strip())
        if match is None:
            raise HTTPException(status_code=400, detail="If-Match must be one strong ETag.")
        if todo.version != int(match.group(1)):
            raise HTTPException(
                status_code=412,
                detail="The to-do changed since you read it.",
                headers={"ETag": f'"{todo.version}"'},
            )
    for field, value in data.model_dump(exclude_unset=True).items():
        setattr(todo, field, value.strip() if field == "title" else value)
    todo.updated_at = datetime.now(UTC)
    await db.commit()  # version_id_col: UPDATE ... WHERE version = <read>, version + 1
    await db.refresh(todo)
    response.headers["ETag"] = f'"{todo.version}"'
    return todo


@app.get("/api/v1/todos/changes", response_model=ChangesPage)
async def sync_changes(
    user: CurrentUser,
    db: DB,
    since: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Any:
    token_scope, page_scope = f"sync:{user.id}", f"sync-page:{user.id}"
    position = None
    if cursor:
        since_xid, token_xid, last_xid, last_id = decode_cursor(page_scope, cursor, 4)
        position = (int(last_xid), uuid.UUID(last_id))
    else:
        since_xid = int(decode_cursor(token_scope, since, 1)[0]) if since else None
        token_xid = await db.scalar(
            text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        )
    horizon = await db.get(SyncHorizon, 1)
    if since_xid is not None and since_xid <= (horizon.purged_through_xid if horizon else 0):
        raise HTTPException(status_code=410, detail="Deletions since this token were purged.")
    stmt = select(Todo).where(Todo.owner_id == user.id)
    if since_xid is None:
        stmt = stmt.where(Todo.deleted_at.is_(None))
    else:
        stmt = stmt.where(Todo.change_xid >= since_xid)
    if position is not None:
        stmt = stmt.where(tuple_(Todo.change_xid, Todo.id) > position)
    todos = (await db.scalars(stmt.order_by(Todo.change_xid, Todo.id).limit(limit + 1))).all()
    page = todos[:limit]
    if len(todos) > limit:
        last = page[-1]
        next_cursor = encode_cursor(
            page_scope, [since_xid, token_xid, last.change_xid, str(last.id)]
        )
        return {
            "data": page,
            "meta": {"count": len(page), "next_cursor": next_cursor},
            "sync_token": None,
        }
    return {
        "data": page,
        "meta": {"count": len(page)},
        "sync_token": encode_cursor(token_scope, [token_xid]),
    }


invalid_refresh = HTTPException(
    status_code=401, detail="The refresh token is missing, invalid or expired; log in again."
)


@app.post("/api/v1/auth/refresh", response_model=TokenResponse)
async def refresh(
    request: Request,
    response: Response,
    db: DB,
    refresh_token: Annotated[str | None, Cookie(alias=REFRESH_COOKIE)] = None,
) -> Any:
    try:
        raw_id, raw_counter, mac = (refresh_token or "").split(".")
        session_id, counter = uuid.UUID(raw_id), int(raw_counter)
    except ValueError:
        raise invalid_refresh from None
    device = await db.scalar(
        select(DeviceSession)
        .options(joinedload(DeviceSession.user))
        .where(DeviceSession.id == session_id)
    )
    if device is None or not hmac.compare_digest(
        refresh_mac(session_id, counter, device.refresh_salt), mac
    ):
        raise invalid_refresh
    now = datetime.now(UTC)
    if (
        device.revoked_at is not None
        or device.expires_at <= now
        or device.last_used_at <= now - settings.idle
        or not device.user.is_active
    ):
        raise invalid_refresh
    client = request.client.host if request.client else ""
    agent = request.headers.get("user-agent", "")[:512]
    if counter == device.refresh_counter:
        # Compare-and-set: only one of two racing refreshes rotates.
        result = await db.execute(
            update(DeviceSession)
            .where(
                DeviceSession.id == session_id,
                DeviceSession.refresh_counter == counter,
                DeviceSession.revoked_at.is_(None),
            )
            .values(
                refresh_counter=DeviceSession.refresh_counter + 1, rotated_at=now, last_used_at=now
            )
            .returning(DeviceSession.refresh_counter)
        )
        new_counter = result.scalar_one_or_none()
        if new_counter is not None:
            db.add(
                AuthEvent(
                    user_id=device.user_id,
                    session_id=session_id,
                    type="refreshed",
                    ip=client,
                    user_agent=agent,
                    created_at=now,
                )
            )
            await db.commit()
            access = create_access_token(device.user_id, session_id)
            set_auth_cookies(response, access, device, new_counter)
            return TokenResponse(
                access_token=access,
                expires_in=settings.access_minutes * 60,
                session_id=session_id,
            )
        await db.refresh(device)
    if counter == device.refresh_counter - 1 and now - device.rotated_at <= settings.leeway:
        access = create_access_token(device.user_id, session_id)
        set_auth_cookies(response, access, device, device.refresh_counter)
        return TokenResponse(
            access_token=access, expires_in=settings.access_minutes * 60, session_id=session_id
        )
    if counter < device.refresh_counter:
        device.revoked_at, device.revoke_reason = now, "refresh_reuse"
        db.add(
            AuthEvent(
                user_id=device.user_id,
                session_id=session_id,
                type="refresh_reuse_detected",
                ip=client,
                user_agent=agent,
                created_at=now,
                detail={"presented_counter": counter, "current_counter": device.refresh_counter},
            )
        )
        await db.commit()
    raise invalid_refresh


def verify_password(stored: str | None, password: str) -> bool:
    try:
        return hasher.verify(stored or DUMMY_HASH, password) and bool(stored)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@app.post("/api/v1/auth/login", response_model=LoginResponse)
async def login(data: LoginRequest, request: Request, response: Response, db: DB) -> Any:
    value = data.login.strip().lower()
    column = User.email if "@" in value else User.username
    user = await db.scalar(select(User).where(column == value))
    client = request.client.host if request.client else ""
    agent = request.headers.get("user-agent", "")[:512]
    if user is not None:
        since = datetime.now(UTC) - timedelta(seconds=settings.failures_window)
        failures = await db.scalar(
            select(func.count())
            .select_from(AuthEvent)
            .where(
                AuthEvent.user_id == user.id,
                AuthEvent.created_at > since,
                AuthEvent.type == "login_failed",
            )
        )
        if failures is not None and failures >= settings.failures_limit:
            raise HTTPException(status_code=429, detail="Too many failed logins.")
    ok = await run_in_threadpool(
        verify_password, user.password_hash if user else None, data.password
    )
    if user is None or not ok or not user.is_active:
        db.add(
            AuthEvent(
                user_id=user.id if user else None,
                type="login_failed",
                ip=client,
                user_agent=agent,
                detail={"reason": "unknown_account" if user is None else "bad_password"},
            )
        )
        await db.commit()
        raise HTTPException(status_code=401, detail="Invalid login or password.")
    if hasher.check_needs_rehash(user.password_hash):
        user.password_hash = await run_in_threadpool(hasher.hash, data.password)
    now = datetime.now(UTC)
    if data.device_id is not None:
        await db.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
            {"k": f"device:{user.id}:{data.device_id}"},
        )
        await db.execute(
            update(DeviceSession)
            .where(
                DeviceSession.user_id == user.id,
                DeviceSession.device_id == data.device_id,
                DeviceSession.revoked_at.is_(None),
            )
            .values(revoked_at=now, revoke_reason="replaced")
        )
    device = DeviceSession(
        id=uuid.uuid4(),
        user_id=user.id,
        device_name=data.device_name or "Unknown device",
        device_id=data.device_id,
        platform=data.platform,
        app_version=data.app_version,
        user_agent=agent,
        ip=client,
        created_at=now,
        last_used_at=now,
        rotated_at=now,
        expires_at=now + settings.max_age,
        refresh_counter=0,
        refresh_salt=secrets.token_hex(16),
    )
    db.add(device)
    user.last_login_at = now
    db.add(
        AuthEvent(
            user_id=user.id,
            session_id=device.id,
            type="login_succeeded",
            ip=client,
            user_agent=agent,
            created_at=now,
        )
    )
    await db.commit()
    access = create_access_token(user.id, device.id)
    set_auth_cookies(response, access, device, 0)
    return LoginResponse(
        access_token=access,
        expires_in=settings.access_minutes * 60,
        session_id=device.id,
        user=UserOut.model_validate(user),
    )


def main() -> None:
    import uvicorn

    # The options `python -m todo_api serve` passes (todo_api/ops/cli.py); uvicorn's default
    # access log stays on, as in a typical deployment.
    uvicorn.run(
        "benchmarks.peer:app",
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8000")),
        workers=int(os.environ.get("WEB_CONCURRENCY", "1")),
        proxy_headers=False,
        forwarded_allow_ips="",
        server_header=False,
        timeout_graceful_shutdown=30,
    )


if __name__ == "__main__":
    main()
