"""The operators' admin UI: Piccolo admin mounted at /admin/, for staff accounts only.

Staff are Piccolo's own users (`piccolo_user`, signed in through the `sessions` table), not API
accounts; they sign in on the admin's login page, behind Piccolo's session cookie, CSRF token
and login rate limit. `just admin-user` creates them.

What the admin shows are *views* of our tables: the real table classes minus every
`secret=True` column. Piccolo's CRUD leaves secret values out of what it reads, but the admin
still renders every column of a table's schema as a form field and would write it back, so a
column that is not in the view is the only kind that can be neither shown, filtered, sorted
nor written.

The tables are read-only in the admin: writing rows directly would bypass the services' rules
(lower-cased emails, to-do versions and sync, the audit trail). Operators act through audited
forms instead: revoke a device session, sign a user out everywhere, deactivate or reactivate
an account. The API checks the session and the account on every request, so these act at once.
"""

from __future__ import annotations

import asyncio
import hmac
import uuid
from collections.abc import Callable, Coroutine, Sequence
from contextvars import ContextVar
from datetime import datetime
from typing import Any, overload
from urllib.parse import urlsplit

from litestar.connection import ASGIConnection
from litestar.handlers import ASGIRouteHandler, asgi
from litestar.types import Receive, Scope, Send
from piccolo.apps.user.tables import BaseUser
from piccolo.columns import Column, ForeignKey
from piccolo.columns.readable import Readable
from piccolo.table import Table, create_table_class
from piccolo_admin.endpoints import FormConfig, TableConfig, create_admin
from piccolo_api.crud.endpoints import OrderBy
from piccolo_api.session_auth.tables import SessionsBase
from pydantic import BaseModel, Field
from starlette.requests import Request

from todo_api.auth import AuditAs, end_sessions, session_exists
from todo_api.auth.tables import AuthEvent, DeviceSession
from todo_api.context import AppContext
from todo_api.core import db
from todo_api.core.errors import DomainError
from todo_api.core.identity import Actor, Client
from todo_api.todos.tables import Todo
from todo_api.users import schemas as user_schemas
from todo_api.users import service as accounts
from todo_api.users.service import UserService
from todo_api.users.tables import User

ADMIN_PATH = "/admin"
SITE_NAME = "todo-api admin"
USERNAME_MAX = 100  # piccolo_user.username is a Varchar(100)


# --- staff accounts -------------------------------------------------------------------------


class StaffUser(BaseUser, tablename="piccolo_user"):
    """Piccolo's staff account, with password hashing moved off the event loop.

    Piccolo hashes with PBKDF2 (600,000 rounds, ~100 ms) inside its async `login`, which would
    stall every API request on the same event loop for each staff login attempt.
    """

    _min_password_length = 8

    @classmethod
    async def login(cls, username: str, password: str) -> int | None:
        if len(username) > USERNAME_MAX or len(password) > cls._max_password_length:
            return None
        row = await cls.select(cls.id, cls.password).where(cls.username == username).first()
        if row is None:
            await asyncio.to_thread(cls.hash_password, password)  # unknown users cost the same
            return None
        stored: str = row["password"]
        _, rounds, salt, _ = cls.split_stored_password(stored)
        candidate = await asyncio.to_thread(cls.hash_password, password, salt, int(rounds))
        if not hmac.compare_digest(candidate, stored):
            return None
        values: dict[Column | str, Any] = {cls.last_login: datetime.now()}
        if int(rounds) != cls._pbkdf2_iteration_count:
            values[cls.password] = await asyncio.to_thread(cls.hash_password, password)
        await cls.update(values).where(cls.id == row["id"])
        user_id: int = row["id"]
        return user_id


async def save_staff_user(username: str, password: str) -> str:
    """Create an active staff superuser, or give an existing one this password (and make it an
    active superuser again, signed out of every admin session). Raises ValueError if invalid."""
    username = username.strip()
    if not username:
        raise ValueError("A username is required.")
    if len(username) > USERNAME_MAX:
        raise ValueError(f"The username is too long (max {USERNAME_MAX}).")
    StaffUser._validate_password(password)
    hashed = await asyncio.to_thread(StaffUser.hash_password, password)
    values: dict[Column | str, Any] = {
        StaffUser.password: hashed,
        StaffUser.active: True,
        StaffUser.admin: True,
        StaffUser.superuser: True,
    }
    async with db.transaction():
        rows = await (
            StaffUser.update(values).where(StaffUser.username == username).returning(StaffUser.id)
        )
        if rows:
            await SessionsBase.delete().where(SessionsBase.user_id == rows[0]["id"])
            return f"updated staff user {username} (new password, active superuser)"
        # piccolo_user.email is unique and required; staff sign in by username only.
        email = username if "@" in username else f"{username}@staff.invalid"
        staff = StaffUser(  # type: ignore[no-untyped-call]  # Piccolo's __init__ is untyped
            username=username, email=email, password=hashed, active=True, admin=True, superuser=True
        )
        await StaffUser.insert(staff)
    return f"created staff user {username} (active superuser)"


async def purge_staff_sessions() -> int:
    """Delete expired staff sessions (Piccolo's Timestamp columns are naive, server-local)."""
    rows = await (
        SessionsBase.delete()
        .where(SessionsBase.expiry_date < datetime.now())
        .returning(SessionsBase.id)
    )
    return len(rows)


# --- the tables, as the admin sees them -------------------------------------------------------


def secretless_view(
    table: type[Table],
    *,
    references: dict[str, type[Table]] | None = None,
    readable: str | None = None,
) -> type[Table]:
    """A Table class on `table`'s database table with every column but the secret ones.

    Foreign keys point at the views in `references` (by column name), so the admin never joins
    back to a class with secrets; `readable` names the column the admin shows for a row.
    """
    members: dict[str, Any] = {}
    for column in table._meta.columns:
        if column._meta.secret:
            continue
        name = column._meta.name
        if isinstance(column, ForeignKey):
            members[name] = ForeignKey(
                references=(references or {})[name],
                null=column._meta.null,
                on_delete=column._foreign_key_meta.on_delete,
            )
        else:
            members[name] = column.copy()
    if readable is not None:

        def get_readable(cls: type[Table]) -> Readable:
            return Readable(template="%s", columns=[cls._meta.get_column_by_name(readable)])

        members["get_readable"] = classmethod(get_readable)
    return create_table_class(
        class_name=f"Admin{table.__name__}",
        class_kwargs={"tablename": table._meta.tablename},
        class_members=members,
    )


AdminUser = secretless_view(User, readable="email")
AdminDeviceSession = secretless_view(DeviceSession, references={"user": AdminUser})
AdminTodo = secretless_view(Todo, references={"owner": AdminUser}, readable="title")
AdminAuthEvent = secretless_view(AuthEvent)
ADMIN_TABLES = (AdminUser, AdminDeviceSession, AdminTodo, AdminAuthEvent)


def _columns(table: type[Table], *names: str) -> list[Column]:
    return [table._meta.get_column_by_name(name) for name in names]


def _newest_first(table: type[Table], column: str) -> list[OrderBy]:
    return [OrderBy(column=table._meta.get_column_by_name(column), ascending=False)]


def table_configs() -> list[TableConfig]:
    """List columns, filters and order of each table (the detail page shows every column)."""
    return [
        TableConfig(
            AdminUser,
            visible_columns=_columns(
                AdminUser,
                "email",
                "username",
                "display_name",
                "role",
                "is_active",
                "created_at",
                "last_login_at",
            ),
            visible_filters=_columns(
                AdminUser, "email", "username", "display_name", "role", "is_active", "created_at"
            ),
            link_column=AdminUser._meta.get_column_by_name("email"),
            order_by=_newest_first(AdminUser, "created_at"),
            menu_group="Accounts",
        ),
        TableConfig(
            AdminDeviceSession,
            visible_columns=_columns(
                AdminDeviceSession,
                "id",
                "user",
                "device_name",
                "platform",
                "ip",
                "last_used_at",
                "expires_at",
                "revoked_at",
                "revoke_reason",
            ),
            visible_filters=_columns(
                AdminDeviceSession,
                "user",
                "device_name",
                "platform",
                "ip",
                "last_used_at",
                "revoked_at",
                "revoke_reason",
            ),
            order_by=_newest_first(AdminDeviceSession, "last_used_at"),
            menu_group="Accounts",
        ),
        TableConfig(
            AdminAuthEvent,
            visible_columns=_columns(
                AdminAuthEvent, "created_at", "type", "user_id", "session_id", "ip", "detail"
            ),
            visible_filters=_columns(
                AdminAuthEvent, "type", "user_id", "session_id", "ip", "created_at"
            ),
            link_column=AdminAuthEvent._meta.get_column_by_name("created_at"),
            order_by=_newest_first(AdminAuthEvent, "created_at"),
            menu_group="Accounts",
        ),
        TableConfig(
            AdminTodo,
            visible_columns=_columns(
                AdminTodo,
                "title",
                "owner",
                "is_completed",
                "due_at",
                "priority",
                "updated_at",
                "deleted_at",
            ),
            visible_filters=_columns(
                AdminTodo, "owner", "title", "notes", "is_completed", "priority", "deleted_at"
            ),
            link_column=AdminTodo._meta.get_column_by_name("title"),
            order_by=_newest_first(AdminTodo, "updated_at"),
            menu_group="Content",
        ),
    ]


# --- operator actions -----------------------------------------------------------------------


class RevokeSessionForm(BaseModel):
    session_id: uuid.UUID = Field(
        description="The id of the device session (device_session table)."
    )
    reason: str = Field(default="revoked_by_staff", min_length=1, max_length=40)


class AccountForm(BaseModel):
    account: str = Field(
        min_length=1, max_length=320, description="The user's email, username or id."
    )


FormEndpoint = Callable[[Request, AccountForm], Coroutine[Any, Any, str]]


def _staff(request: Request) -> Actor:
    """The staff account behind a form, acting as a superadmin would through the API."""
    return Actor(role="superadmin", name=f"staff:{request.user.display_name}")


async def _find_account(account: str) -> user_schemas.User:
    user = await accounts.find_account(account)
    if user is None:
        raise ValueError("No account has this email, username or id.")
    return user


def operator_forms(context: AppContext) -> list[FormConfig]:
    """The forms staff act through, each through the owning feature's service (so with its
    rules and its audit event, naming the staff account)."""

    def client(request: Request) -> Client:
        connection: ASGIConnection[Any, Any, Any, Any] = ASGIConnection(scope=request.scope)  # type: ignore[arg-type]
        return context.client(connection)

    def users(request: Request) -> UserService:
        return UserService(context.passwords, context.cursors, client(request))

    async def revoke_session(request: Request, data: RevokeSessionForm) -> str:
        ended = await end_sessions(
            data.reason,
            session_id=data.session_id,
            audit=AuditAs(
                "session_revoked",
                client(request),
                detail={"by": _staff(request).name, "reason": data.reason},
            ),
        )
        if not ended:
            raise ValueError(
                "This session is already revoked."
                if await session_exists(data.session_id)
                else "No session has this id."
            )
        return f"Revoked the session {data.session_id} ({ended[0].device_name})."

    async def sign_out_everywhere(request: Request, data: AccountForm) -> str:
        user = await _find_account(data.account)
        ended = await end_sessions(
            "revoked_by_staff",
            user_id=user.id,
            audit=AuditAs("logout_all", client(request), detail={"by": _staff(request).name}),
        )
        return f"Revoked {len(ended)} session(s) of {user.email}."

    def set_active(active: bool) -> FormEndpoint:
        async def endpoint(request: Request, data: AccountForm) -> str:
            user = await _find_account(data.account)
            try:
                done = await users(request).administer(
                    _staff(request), user.id, user_schemas.AdminUserUpdate(is_active=active)
                )
            except DomainError as exc:
                raise ValueError(exc.message) from None
            if active:
                return f"Reactivated {done.user.email}."
            return f"Deactivated {done.user.email} and revoked {done.sessions_ended} session(s)."

        return endpoint

    return [
        FormConfig(
            name="Revoke device session",
            pydantic_model=RevokeSessionForm,
            endpoint=revoke_session,
            description="Sign one device out: its access token stops working at once and its "
            "refresh token is dead. Copy the id from the device_session table.",
            form_group="Sessions",
        ),
        FormConfig(
            name="Sign out everywhere",
            pydantic_model=AccountForm,
            endpoint=sign_out_everywhere,
            description="Revoke every live session of one account (it can log in again).",
            form_group="Sessions",
        ),
        FormConfig(
            name="Deactivate user",
            pydantic_model=AccountForm,
            endpoint=set_active(False),
            description="Block the account: its sessions are revoked and it cannot log in "
            "until reactivated.",
            form_group="Accounts",
        ),
        FormConfig(
            name="Reactivate user",
            pydantic_model=AccountForm,
            endpoint=set_active(True),
            description="Let a deactivated account log in again.",
            form_group="Accounts",
        ),
    ]


# --- the ASGI app and its mount ---------------------------------------------------------------

# The host name the current request was sent to (see RequestHost).
_REQUEST_HOST: ContextVar[str | None] = ContextVar("admin_request_host", default=None)


class RequestHost(Sequence[str]):
    """Piccolo's `allowed_hosts`, worked out per request.

    Over HTTPS, Piccolo's CSRF check also requires the Origin (or Referer) of a POST to name
    one of the site's hosts. The admin is served on whatever host the API is, so the allowed
    host is the one the staff's browser addressed: the request's Host header (a cross-site page
    cannot change it). Behind a proxy, pass the Host header through.
    """

    def _hosts(self) -> tuple[str, ...]:
        host = _REQUEST_HOST.get()
        return (host,) if host else ()

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        return self._hosts()[index]

    def __len__(self) -> int:
        return len(self._hosts())


def _host_name(scope: Scope) -> str | None:
    host = next((value for name, value in scope.get("headers", ()) if name == b"host"), b"")
    return urlsplit(f"//{host.decode('latin-1')}").hostname if host else None


def build_admin(context: AppContext) -> Any:
    """Piccolo admin's ASGI app (a FastAPI app) over the admin views and the operator forms."""
    return create_admin(
        tables=table_configs(),
        forms=operator_forms(context),
        auth_table=StaffUser,
        session_table=SessionsBase,
        # Rows are changed through the forms only; the forms are not affected by read_only.
        read_only=True,
        # Secure session cookie wherever our own cookies are Secure (prod).
        production=context.settings.cookie_secure,
        site_name=SITE_NAME,
        allowed_hosts=RequestHost(),
        auto_include_related=False,
    )


def admin_handler(context: AppContext) -> ASGIRouteHandler:
    """The admin, built once, mounted at /admin/ (its own auth: no access token needed)."""
    admin = build_admin(context)

    @asgi(
        ADMIN_PATH,
        is_mount=True,
        copy_scope=True,
        name="admin",
        opt={"exclude_from_auth": True},
    )
    async def admin_app(scope: Scope, receive: Receive, send: Send) -> None:
        raw_path: bytes = scope.get("raw_path") or b""
        if scope["path"] == "/" and raw_path and not raw_path.endswith(b"/"):
            # The single-page app loads its assets and API relative to /admin/.
            await send(
                {
                    "type": "http.response.start",
                    "status": 308,
                    "headers": [(b"location", b"admin/"), (b"content-length", b"0")],
                }
            )
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return

        token = _REQUEST_HOST.set(_host_name(scope))
        try:
            await admin(scope, receive, send)
        finally:
            _REQUEST_HOST.reset(token)

    return admin_app
