"""Accounts, logins, device sessions and refresh rotation: the rules, with no web framework in sight."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from piccolo.custom_types import Combinable

from todo_api.core import db
from todo_api.auth import audit
from todo_api.auth.audit import Client
from todo_api.auth.live_sessions import sessions_changed
from todo_api.auth.passwords import Passwords
from todo_api.auth.schemas import (
    AuthEvent as AuthEventOut,
)
from todo_api.auth.schemas import (
    LoginRequest,
    RegisterRequest,
    Session,
)
from todo_api.auth.tables import AuthEvent, DeviceSession
from todo_api.auth.tokens import InvalidToken, TokenKeys
from todo_api.core.config import Settings
from todo_api.core.errors import Conflict, NotFound, TooManyRequests, Unauthorized
from todo_api.core.pagination import Cursors, keyset_page
from todo_api.core.schemas import Page, PageMeta
from todo_api.users.schemas import User as UserOut
from todo_api.users.tables import User

INVALID_CREDENTIALS = "Invalid login or password."
INVALID_REFRESH = "The refresh token is missing, invalid or expired; log in again."
ROLE_RANK = {"user": 0, "admin": 1, "superadmin": 2}
RATE_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
USER_COLUMNS = (
    User.id,
    User.email,
    User.username,
    User.display_name,
    User.role,
    User.is_active,
    User.created_at,
    User.last_login_at,
)
SESSION_COLUMNS = (
    DeviceSession.id,
    DeviceSession.device_name,
    DeviceSession.device_id,
    DeviceSession.platform,
    DeviceSession.app_version,
    DeviceSession.user_agent,
    DeviceSession.ip,
    DeviceSession.created_at,
    DeviceSession.last_used_at,
    DeviceSession.expires_at,
)


@dataclass(frozen=True, slots=True)
class CurrentUser:
    """The authenticated caller: who, on which device session, with which role."""

    id: uuid.UUID
    session_id: uuid.UUID
    role: str


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    access_token: str
    expires_in: int
    refresh_token: str
    session_id: uuid.UUID
    session_expires_at: datetime
    user_id: uuid.UUID


# Refresh rotation's two statements (prepared, not built by Piccolo: it is a hot path).
REFRESH_STATE_SQL = (
    'SELECT s."user", s.refresh_counter, s.refresh_salt, s.rotated_at, s.expires_at, '
    "s.last_used_at, s.revoked_at, u.is_active AS user_is_active "
    'FROM device_session s JOIN app_user u ON u.id = s."user" WHERE s.id = $1'
)
# Compare-and-set on the counter, and the `refreshed` audit event, in one statement.
ROTATE_SQL = (
    "WITH rotated AS (UPDATE device_session "
    "SET refresh_counter = refresh_counter + 1, rotated_at = $3, last_used_at = $3 "
    'WHERE id = $1 AND refresh_counter = $2 AND revoked_at IS NULL RETURNING "user", '
    "refresh_counter), "
    "logged AS (INSERT INTO auth_event (type, user_id, session_id, ip, user_agent, created_at) "
    "SELECT 'refreshed', \"user\", $1, $4, $5, $3 FROM rotated) "
    "SELECT refresh_counter FROM rotated"
)


def now() -> datetime:
    return datetime.now(UTC)


def parse_rate(rate: str) -> tuple[int, int]:
    """'5/minute' -> (5, 60)."""
    count, unit = rate.split("/")
    return int(count), RATE_UNITS[unit]


def login_column(login: str) -> tuple[Any, str]:
    """Which column a login names (an email has an @), and its normalised value."""
    value = login.strip().lower()
    return (User.email if "@" in value else User.username), value


def live_session(settings: Settings, moment: datetime) -> Combinable:
    """A session that is neither revoked nor past its absolute or idle lifetime."""
    idle = timedelta(days=settings.refresh_token_expire_days)
    return (
        DeviceSession.revoked_at.is_null()
        & (DeviceSession.expires_at > moment)
        & (DeviceSession.last_used_at > moment - idle)
    )


async def revoke_user_sessions(
    user_id: uuid.UUID, reason: str, *, keep: uuid.UUID | None = None
) -> int:
    """Revoke every live session of a user (but `keep`); returns how many."""
    where = (DeviceSession.user == user_id) & DeviceSession.revoked_at.is_null()
    if keep is not None:
        where &= DeviceSession.id != keep
    rows = await (
        DeviceSession.update({DeviceSession.revoked_at: now(), DeviceSession.revoke_reason: reason})
        .where(where)
        .returning(DeviceSession.id)
    )
    sessions_changed()
    return len(rows)


def user_out(row: dict[str, Any]) -> UserOut:
    return UserOut(**{column._meta.name: row[column._meta.name] for column in USER_COLUMNS})


class AuthService:
    """Registration, login, refresh and the caller's device sessions."""

    def __init__(
        self,
        settings: Settings,
        keys: TokenKeys,
        passwords: Passwords,
        cursors: Cursors,
        client: Client,
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.passwords = passwords
        self.cursors = cursors
        self.client = client

    async def register(self, data: RegisterRequest) -> UserOut:
        password_hash = await self.passwords.hash(data.password)
        values: dict[Any, Any] = {
            User.email: data.email.strip().lower(),
            User.username: data.username.lower() if data.username else None,
            User.display_name: data.display_name.strip(),
            User.password_hash: password_hash,
        }
        try:
            rows = await User.insert(User(values)).returning(*USER_COLUMNS)
        except asyncpg.UniqueViolationError as exc:
            field = "username" if "username" in (exc.constraint_name or "") else "email"
            raise Conflict(f"An account with this {field} already exists.") from None
        user = user_out(rows[0])
        await audit.record("register", self.client, user_id=user.id)
        return user

    async def login(self, data: LoginRequest) -> tuple[IssuedTokens, UserOut]:
        column, value = login_column(data.login)
        row = (
            await User.select(*USER_COLUMNS, User.password_hash.as_alias("password_hash"))
            .where(column == value)
            .first()
        )
        if row is not None:
            await self._check_failed_logins(row["id"])
        ok = await self.passwords.verify(row["password_hash"] if row else None, data.password)
        if row is None or not ok or not row["is_active"]:
            reason = "unknown_account" if row is None else "bad_password" if not ok else "inactive"
            await audit.record(
                "login_failed", self.client, user_id=row["id"] if row else None, reason=reason
            )
            raise Unauthorized(INVALID_CREDENTIALS)
        if self.passwords.needs_rehash(row["password_hash"]):
            new_hash = await self.passwords.hash(data.password)
            await User.update({User.password_hash: new_hash}).where(User.id == row["id"])
        tokens = await self._start_session(row["id"], data)
        user = user_out({**row, "last_login_at": now()})
        return tokens, user

    async def _check_failed_logins(self, user_id: uuid.UUID) -> None:
        limit, window = parse_rate(self.settings.rate_limit_login_failures)
        since = now() - timedelta(seconds=window)
        failures = await AuthEvent.count().where(
            (AuthEvent.user_id == user_id)
            & (AuthEvent.created_at > since)
            & (AuthEvent.type == "login_failed")
        )
        if failures >= limit:
            await audit.record("rate_limited", self.client, user_id=user_id, limit="login_failures")
            raise TooManyRequests(
                "Too many failed logins for this account; try again later.",
                headers={"Retry-After": str(window)},
            )

    async def _start_session(self, user_id: uuid.UUID, data: LoginRequest) -> IssuedTokens:
        moment = now()
        salt = self.keys.new_salt()
        session_id = uuid.uuid4()
        expires_at = moment + timedelta(days=self.settings.session_max_age_days)
        session = DeviceSession(
            {
                DeviceSession.id: session_id,
                DeviceSession.user: user_id,
                DeviceSession.device_name: data.device_name or device_name(self.client.user_agent),
                DeviceSession.device_id: data.device_id,
                DeviceSession.platform: data.platform,
                DeviceSession.app_version: data.app_version,
                DeviceSession.user_agent: self.client.user_agent[:512],
                DeviceSession.ip: self.client.ip,
                DeviceSession.created_at: moment,
                DeviceSession.last_used_at: moment,
                DeviceSession.rotated_at: moment,
                DeviceSession.expires_at: expires_at,
                DeviceSession.refresh_counter: 0,
                DeviceSession.refresh_salt: salt,
            }
        )
        async with DeviceSession._meta.db.transaction():
            if data.device_id is not None:
                # One login per device id at a time, so the old session is always the one replaced.
                await DeviceSession.raw(
                    "SELECT pg_advisory_xact_lock(hashtextextended({}, 0))",
                    f"device:{user_id}:{data.device_id}",
                )
                await DeviceSession.update(
                    {DeviceSession.revoked_at: moment, DeviceSession.revoke_reason: "replaced"}
                ).where(
                    (DeviceSession.user == user_id)
                    & (DeviceSession.device_id == data.device_id)
                    & DeviceSession.revoked_at.is_null()
                )
            await DeviceSession.insert(session)
            await User.update({User.last_login_at: moment}).where(User.id == user_id)
        if data.device_id is not None:
            sessions_changed()
        await audit.record("login_succeeded", self.client, user_id=user_id, session_id=session_id)
        return self._tokens(user_id, session_id, 0, salt, expires_at)

    def _tokens(
        self,
        user_id: uuid.UUID,
        session_id: uuid.UUID,
        counter: int,
        salt: str,
        expires_at: datetime,
    ) -> IssuedTokens:
        return IssuedTokens(
            access_token=self.keys.issue_access(user_id, session_id),
            expires_in=int(self.keys.access_lifetime.total_seconds()),
            refresh_token=self.keys.refresh_token(session_id, counter, salt),
            session_id=session_id,
            session_expires_at=expires_at,
            user_id=user_id,
        )

    async def refresh(self, presented: str | None) -> IssuedTokens:
        """Rotate the refresh token (DESIGN.md §4): compare-and-set on the session's counter.

        The current token rotates. The immediately previous one, within the leeway, gets the
        current token back (racing tabs share one cookie jar). Any other valid-but-old token is
        reuse: that session is revoked and the event recorded; other devices are untouched.
        """
        try:
            token = self.keys.parse_refresh(presented or "")
        except InvalidToken:
            raise Unauthorized(INVALID_REFRESH) from None
        row = await self._refresh_state(token.session_id)
        if row is None or not self.keys.refresh_matches(token, row["refresh_salt"]):
            raise Unauthorized(INVALID_REFRESH)
        moment = now()
        if not self._refreshable(row, moment):
            raise Unauthorized(INVALID_REFRESH)
        user_id: uuid.UUID = row["user"]
        if token.counter == row["refresh_counter"]:
            # Rotation and its audit event in one round trip (refresh is a hot path).
            rotated = await db.fetchval(
                ROTATE_SQL,
                token.session_id,
                token.counter,
                moment,
                self.client.ip,
                self.client.user_agent[:512],
            )
            if rotated is not None:
                return self._tokens(
                    user_id,
                    token.session_id,
                    rotated,
                    row["refresh_salt"],
                    row["expires_at"],
                )
            # A concurrent request rotated it between our read and our write.
            row = await self._refresh_state(token.session_id)
            if row is None or not self._refreshable(row, moment):
                raise Unauthorized(INVALID_REFRESH)
        leeway = timedelta(seconds=self.settings.refresh_reuse_leeway_seconds)
        if token.counter == row["refresh_counter"] - 1 and moment - row["rotated_at"] <= leeway:
            return self._tokens(
                user_id,
                token.session_id,
                row["refresh_counter"],
                row["refresh_salt"],
                row["expires_at"],
            )
        if token.counter < row["refresh_counter"]:
            await DeviceSession.update(
                {DeviceSession.revoked_at: moment, DeviceSession.revoke_reason: "refresh_reuse"}
            ).where((DeviceSession.id == token.session_id) & DeviceSession.revoked_at.is_null())
            sessions_changed()
            await audit.record(
                "refresh_reuse_detected",
                self.client,
                user_id=user_id,
                session_id=token.session_id,
                presented_counter=token.counter,
                current_counter=row["refresh_counter"],
            )
        raise Unauthorized(INVALID_REFRESH)

    @staticmethod
    async def _refresh_state(session_id: uuid.UUID) -> Mapping[str, Any] | None:
        row: Mapping[str, Any] | None = await db.fetchrow(REFRESH_STATE_SQL, session_id)
        return row

    def _refreshable(self, row: Mapping[str, Any], moment: datetime) -> bool:
        idle = timedelta(days=self.settings.refresh_token_expire_days)
        return bool(
            row["revoked_at"] is None
            and row["expires_at"] > moment
            and row["last_used_at"] > moment - idle
            and row["user_is_active"]
        )

    async def logout(self, current: CurrentUser) -> None:
        await DeviceSession.update(
            {DeviceSession.revoked_at: now(), DeviceSession.revoke_reason: "logout"}
        ).where((DeviceSession.id == current.session_id) & DeviceSession.revoked_at.is_null())
        sessions_changed()
        await audit.record("logout", self.client, user_id=current.id, session_id=current.session_id)

    async def logout_all(self, current: CurrentUser) -> None:
        count = await revoke_user_sessions(current.id, "logout_all")
        await audit.record(
            "logout_all",
            self.client,
            user_id=current.id,
            session_id=current.session_id,
            count=count,
        )

    async def sessions(self, current: CurrentUser) -> Page[Session]:
        rows = await (
            DeviceSession.select(*SESSION_COLUMNS)
            .where((DeviceSession.user == current.id) & live_session(self.settings, now()))
            .order_by(DeviceSession.last_used_at, ascending=False)
        )
        data = [Session(**row, current=row["id"] == current.session_id) for row in rows]
        return Page(data=data, meta=PageMeta(count=len(data)))

    async def rename_session(
        self, current: CurrentUser, session_id: uuid.UUID, name: str
    ) -> Session:
        rows = await (
            DeviceSession.update({DeviceSession.device_name: name.strip() or name})
            .where(
                (DeviceSession.id == session_id)
                & (DeviceSession.user == current.id)
                & live_session(self.settings, now())
            )
            .returning(*SESSION_COLUMNS)
        )
        if not rows:
            raise NotFound("No such session.")
        return Session(**rows[0], current=session_id == current.session_id)

    async def revoke_session(self, current: CurrentUser, session_id: uuid.UUID) -> None:
        rows = await (
            DeviceSession.update(
                {DeviceSession.revoked_at: now(), DeviceSession.revoke_reason: "revoked_by_user"}
            )
            .where(
                (DeviceSession.id == session_id)
                & (DeviceSession.user == current.id)
                & DeviceSession.revoked_at.is_null()
            )
            .returning(DeviceSession.id)
        )
        sessions_changed()
        if not rows:
            raise NotFound("No such session.")
        await audit.record(
            "session_revoked", self.client, user_id=current.id, session_id=session_id
        )

    async def events(
        self, current: CurrentUser, limit: int, cursor: str | None
    ) -> Page[AuthEventOut]:
        scope = f"events:{current.id}"
        where: Combinable = AuthEvent.user_id == current.id
        if cursor:
            created_at, event_id = self.cursors.decode(scope, cursor, 2)
            at = datetime.fromisoformat(created_at)
            where &= (AuthEvent.created_at < at) | (
                (AuthEvent.created_at == at) & (AuthEvent.id < uuid.UUID(event_id))
            )
        rows = await (
            AuthEvent.select(
                AuthEvent.id,
                AuthEvent.type,
                AuthEvent.session_id,
                AuthEvent.ip,
                AuthEvent.user_agent,
                AuthEvent.created_at,
                AuthEvent.detail,
            )
            .where(where)
            .order_by(AuthEvent.created_at, AuthEvent.id, ascending=False)
            .limit(limit + 1)
            .output(load_json=True)
        )
        page, next_cursor = keyset_page(
            self.cursors,
            scope,
            rows,
            limit,
            lambda row: [row["created_at"].isoformat(), str(row["id"])],
        )
        return Page(
            data=[AuthEventOut(**row) for row in page],
            meta=PageMeta(count=len(page), next_cursor=next_cursor),
        )


def device_name(user_agent: str) -> str:
    """A human name for a device from its User-Agent, when the client gave none."""
    ua = user_agent.lower()
    browser = next(
        (
            name
            for key, name in (
                ("edg/", "Edge"),
                ("firefox/", "Firefox"),
                ("chrome/", "Chrome"),
                ("safari/", "Safari"),
                ("curl/", "curl"),
                ("okhttp", "Android app"),
                ("python-httpx", "httpx"),
            )
            if key in ua
        ),
        None,
    )
    system = next(
        (
            name
            for key, name in (
                ("iphone", "iPhone"),
                ("ipad", "iPad"),
                ("android", "Android"),
                ("windows", "Windows"),
                ("mac os", "macOS"),
                ("linux", "Linux"),
            )
            if key in ua
        ),
        None,
    )
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or "Unknown device"
