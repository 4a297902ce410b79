"""Logins, device sessions, refresh rotation and the caller's security events: the rules, with
no web framework in sight. Accounts themselves belong to `users`."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from piccolo.custom_types import Combinable

from todo_api.auth import queries, schemas, tables
from todo_api.auth.audit import check_password_failures, record_event
from todo_api.auth.schemas import LoginRequest, Session
from todo_api.auth.sessions import AuditAs, end_sessions, is_live, live
from todo_api.auth.tokens import InvalidToken, IssuedTokens, TokenKeys
from todo_api.core import db
from todo_api.core.clock import now
from todo_api.core.config import Settings
from todo_api.core.errors import NotFound, Unauthorized
from todo_api.core.identity import Client, CurrentUser
from todo_api.core.pagination import Cursors, keyset_page
from todo_api.core.schemas import Page, PageMeta
from todo_api.users import service as accounts
from todo_api.users.passwords import Passwords
from todo_api.users.schemas import User

INVALID_CREDENTIALS = "Invalid login or password."
INVALID_REFRESH = "The refresh token is missing, invalid or expired; log in again."
SESSION_COLUMNS = (
    tables.DeviceSession.id,
    tables.DeviceSession.device_name,
    tables.DeviceSession.device_id,
    tables.DeviceSession.platform,
    tables.DeviceSession.app_version,
    tables.DeviceSession.user_agent,
    tables.DeviceSession.ip,
    tables.DeviceSession.created_at,
    tables.DeviceSession.last_used_at,
    tables.DeviceSession.expires_at,
)
EVENT_COLUMNS = (
    tables.AuthEvent.id,
    tables.AuthEvent.type,
    tables.AuthEvent.session_id,
    tables.AuthEvent.ip,
    tables.AuthEvent.user_agent,
    tables.AuthEvent.created_at,
    tables.AuthEvent.detail,
)


class AuthService:
    """Login, refresh and the caller's device sessions and events."""

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

    async def login(self, data: LoginRequest) -> tuple[IssuedTokens, User]:
        account = await accounts.account_for_login(data.login)
        if account is not None:
            await check_password_failures(
                account.user.id, self.settings.rate_limit_login_failures, self.client
            )
        stored_hash = account.password_hash if account is not None else None
        ok = await self.passwords.verify(stored_hash, data.password)
        if account is None or not ok or not account.user.is_active:
            reason = (
                "unknown_account" if account is None else "bad_password" if not ok else "inactive"
            )
            await record_event(
                "login_failed",
                self.client,
                user_id=account.user.id if account else None,
                reason=reason,
            )
            raise Unauthorized(INVALID_CREDENTIALS)
        user = account.user
        if self.passwords.needs_rehash(account.password_hash):
            await accounts.replace_password_hash(user.id, await self.passwords.hash(data.password))
        moment = now()
        tokens = await self._start_session(user.id, data, moment)
        return tokens, accounts.with_last_login(user, moment)

    async def _start_session(
        self, user_id: uuid.UUID, data: LoginRequest, moment: datetime
    ) -> IssuedTokens:
        salt = self.keys.new_salt()
        session_id = uuid.uuid4()
        expires_at = moment + timedelta(days=self.settings.session_max_age_days)
        session = tables.DeviceSession(
            {
                tables.DeviceSession.id: session_id,
                tables.DeviceSession.user: user_id,
                tables.DeviceSession.device_name: data.device_name
                or device_name(self.client.user_agent),
                tables.DeviceSession.device_id: data.device_id,
                tables.DeviceSession.platform: data.platform,
                tables.DeviceSession.app_version: data.app_version,
                tables.DeviceSession.user_agent: self.client.user_agent[:512],
                tables.DeviceSession.ip: self.client.ip,
                tables.DeviceSession.created_at: moment,
                tables.DeviceSession.last_used_at: moment,
                tables.DeviceSession.rotated_at: moment,
                tables.DeviceSession.expires_at: expires_at,
                tables.DeviceSession.refresh_counter: 0,
                tables.DeviceSession.refresh_salt: salt,
            }
        )
        async with db.transaction():
            if data.device_id is not None:
                # One login per device id at a time, so the old session is always the one replaced.
                await db.advisory_xact_lock(f"device:{user_id}:{data.device_id}")
                await end_sessions("replaced", user_id=user_id, device_id=data.device_id)
            await tables.DeviceSession.insert(session)
            await accounts.note_login(user_id, moment)
        await record_event("login_succeeded", self.client, user_id=user_id, session_id=session_id)
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
        state = await queries.refresh_state(token.session_id)
        if state is None or not self.keys.refresh_matches(token, state.refresh_salt):
            raise Unauthorized(INVALID_REFRESH)
        moment = now()
        if not is_live(state, self.settings, moment):
            raise Unauthorized(INVALID_REFRESH)
        if token.counter == state.refresh_counter:
            # Rotation and its audit event in one round trip (refresh is a hot path).
            rotated = await queries.rotate(
                token.session_id,
                token.counter,
                moment,
                self.client.ip,
                self.client.user_agent[:512],
            )
            if rotated is not None:
                return self._tokens(
                    state.user_id, token.session_id, rotated, state.refresh_salt, state.expires_at
                )
            # A concurrent request rotated it between our read and our write.
            state = await queries.refresh_state(token.session_id)
            if state is None or not is_live(state, self.settings, moment):
                raise Unauthorized(INVALID_REFRESH)
        leeway = timedelta(seconds=self.settings.refresh_reuse_leeway_seconds)
        if token.counter == state.refresh_counter - 1 and moment - state.rotated_at <= leeway:
            return self._tokens(
                state.user_id,
                token.session_id,
                state.refresh_counter,
                state.refresh_salt,
                state.expires_at,
            )
        if token.counter < state.refresh_counter:
            await end_sessions(
                "refresh_reuse",
                session_id=token.session_id,
                audit=AuditAs(
                    "refresh_reuse_detected",
                    self.client,
                    detail={
                        "presented_counter": token.counter,
                        "current_counter": state.refresh_counter,
                    },
                ),
            )
        raise Unauthorized(INVALID_REFRESH)

    async def logout(self, current: CurrentUser) -> None:
        await end_sessions(
            "logout", session_id=current.session_id, audit=AuditAs("logout", self.client)
        )

    async def logout_all(self, current: CurrentUser) -> None:
        await end_sessions(
            "logout_all",
            user_id=current.id,
            audit=AuditAs("logout_all", self.client, session_id=current.session_id),
        )

    async def sessions(self, current: CurrentUser) -> Page[Session]:
        rows = await (
            tables.DeviceSession.select(*SESSION_COLUMNS)
            .where((tables.DeviceSession.user == current.id) & live(self.settings, now()))
            .order_by(tables.DeviceSession.last_used_at, ascending=False)
        )
        data = [Session(**row, current=row["id"] == current.session_id) for row in rows]
        return Page(data=data, meta=PageMeta(count=len(data)))

    async def rename_session(
        self, current: CurrentUser, session_id: uuid.UUID, name: str
    ) -> Session:
        rows = await (
            tables.DeviceSession.update({tables.DeviceSession.device_name: name.strip() or name})
            .where(
                (tables.DeviceSession.id == session_id)
                & (tables.DeviceSession.user == current.id)
                & live(self.settings, now())
            )
            .returning(*SESSION_COLUMNS)
        )
        if not rows:
            raise NotFound("No such session.")
        return Session(**rows[0], current=session_id == current.session_id)

    async def revoke_session(self, current: CurrentUser, session_id: uuid.UUID) -> None:
        ended = await end_sessions(
            "revoked_by_user",
            user_id=current.id,
            session_id=session_id,
            audit=AuditAs("session_revoked", self.client),
        )
        if not ended:
            raise NotFound("No such session.")

    async def events(
        self, current: CurrentUser, limit: int, cursor: str | None
    ) -> Page[schemas.AuthEvent]:
        scope = f"events:{current.id}"
        where: Combinable = tables.AuthEvent.user_id == current.id
        if cursor:
            created_at, event_id = self.cursors.decode(scope, cursor, 2)
            at = datetime.fromisoformat(created_at)
            where &= (tables.AuthEvent.created_at < at) | (
                (tables.AuthEvent.created_at == at) & (tables.AuthEvent.id < uuid.UUID(event_id))
            )
        rows = await (
            tables.AuthEvent.select(*EVENT_COLUMNS)
            .where(where)
            .order_by(tables.AuthEvent.created_at, tables.AuthEvent.id, ascending=False)
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
            data=[
                schemas.AuthEvent(**{**row, "detail": _as_owner_sees(row["detail"])})
                for row in page
            ],
            meta=PageMeta(count=len(page), next_cursor=next_cursor),
        )


def _as_owner_sees(detail: dict[str, Any]) -> dict[str, Any]:
    """An event's detail as the account's owner sees it: who acted on it is "staff" (an
    operator in the admin UI) or "administrator" (an admin through the API), never their name
    or id; the admin UI shows the stored detail."""
    by = detail.get("by")
    if not isinstance(by, str):
        return detail
    return {**detail, "by": "staff" if by.startswith("staff:") else "administrator"}


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
