"""Profiles, password changes, account deletion, and user administration."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from todo_api.auth import audit
from todo_api.auth.audit import Client
from todo_api.auth.live_sessions import sessions_changed
from todo_api.auth.passwords import Passwords
from todo_api.auth.service import (
    ROLE_RANK,
    USER_COLUMNS,
    CurrentUser,
    now,
    revoke_user_sessions,
    user_out,
)
from todo_api.core.config import Settings
from todo_api.core.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from todo_api.core.pagination import Cursors, keyset_page
from todo_api.core.schemas import Page, PageMeta
from todo_api.users.schemas import (
    AdminUserUpdate,
    NewAccount,
    PasswordChange,
    ProfileUpdate,
)
from todo_api.users.schemas import User as UserOut
from todo_api.users.tables import User

WRONG_PASSWORD = "The password is not correct."


async def create_account(settings: Settings, email: str, password: str, role: str) -> UserOut:
    """An account with any role, validated as registration validates it (for operators' CLI)."""
    try:
        data = msgspec.convert(
            {"email": email, "password": password, "role": role}, type=NewAccount
        )
    except msgspec.ValidationError as exc:
        raise BadRequest(str(exc)) from None
    passwords = Passwords(settings)
    try:
        password_hash = await passwords.hash(data.password)
    finally:
        passwords.close()
    try:
        rows = await User.insert(
            User(
                {
                    User.email: data.email.strip().lower(),
                    User.password_hash: password_hash,
                    User.role: data.role,
                }
            )
        ).returning(*USER_COLUMNS)
    except asyncpg.UniqueViolationError:
        raise Conflict("An account with this email already exists.") from None
    await audit.record(
        "register", Client(ip="", user_agent="cli"), user_id=rows[0]["id"], role=role
    )
    return user_out(rows[0])


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class UserService:
    """What a caller may do to their own account, and what admins may do to others'."""

    def __init__(self, passwords: Passwords, cursors: Cursors, client: Client) -> None:
        self.passwords = passwords
        self.cursors = cursors
        self.client = client

    async def get(self, user_id: uuid.UUID) -> UserOut:
        row = await User.select(*USER_COLUMNS).where(User.id == user_id).first()
        if row is None:
            raise NotFound("No such user.")
        return user_out(row)

    async def update_profile(self, current: CurrentUser, change: ProfileUpdate) -> UserOut:
        values: dict[Any, Any] = {}
        if change.display_name is not msgspec.UNSET:
            values[User.display_name] = change.display_name.strip()
        if change.username is not msgspec.UNSET:
            values[User.username] = change.username.lower() if change.username else None
        if change.email is not msgspec.UNSET:
            if change.current_password is msgspec.UNSET:
                raise Unauthorized("Changing the email needs `current_password`.")
            await self._check_password(current.id, change.current_password)
            values[User.email] = change.email.strip().lower()
        if not values:
            return await self.get(current.id)
        values[User.updated_at] = now()
        try:
            rows = await User.update(values).where(User.id == current.id).returning(*USER_COLUMNS)
        except asyncpg.UniqueViolationError as exc:
            field = "username" if "username" in (exc.constraint_name or "") else "email"
            raise Conflict(f"An account with this {field} already exists.") from None
        if change.email is not msgspec.UNSET:
            await audit.record("email_changed", self.client, user_id=current.id)
        return user_out(rows[0])

    async def change_password(self, current: CurrentUser, change: PasswordChange) -> None:
        await self._check_password(current.id, change.current_password)
        new_hash = await self.passwords.hash(change.new_password)
        moment = now()
        async with User._meta.db.transaction():
            await User.update(
                {
                    User.password_hash: new_hash,
                    User.password_changed_at: moment,
                    User.updated_at: moment,
                }
            ).where(User.id == current.id)
            revoked = await revoke_user_sessions(
                current.id, "password_changed", keep=current.session_id
            )
        sessions_changed()  # again, now that the revocations are committed
        await audit.record(
            "password_changed",
            self.client,
            user_id=current.id,
            session_id=current.session_id,
            sessions_revoked=revoked,
        )

    async def delete_account(self, current: CurrentUser, password: str) -> None:
        await self._check_password(current.id, password)
        # Sessions (and to-dos) go with the row: their foreign keys cascade.
        await User.delete().where(User.id == current.id)
        sessions_changed()
        await audit.record(
            "account_deleted", self.client, user_id=current.id, session_id=current.session_id
        )

    async def _check_password(self, user_id: uuid.UUID, password: str) -> None:
        row = await (
            User.select(User.password_hash.as_alias("password_hash"))
            .where(User.id == user_id)
            .first()
        )
        if not await self.passwords.verify(row["password_hash"] if row else None, password):
            raise Unauthorized(WRONG_PASSWORD)

    async def list_users(self, query: str | None, limit: int, cursor: str | None) -> Page[UserOut]:
        """Newest accounts first; `query` matches email or username, case-insensitively."""
        scope = f"users:{query or ''}"
        where: Any = None
        if query:
            pattern = _like_pattern(query.strip().lower())
            where = User.email.like(pattern) | User.username.like(pattern)
        if cursor:
            created_at, user_id = self.cursors.decode(scope, cursor, 2)
            at = datetime.fromisoformat(created_at)
            after = (User.created_at < at) | (
                (User.created_at == at) & (User.id < uuid.UUID(user_id))
            )
            where = after if where is None else where & after
        select = User.select(*USER_COLUMNS)
        if where is not None:
            select = select.where(where)
        rows = await select.order_by(User.created_at, User.id, ascending=False).limit(limit + 1)
        page, next_cursor = keyset_page(
            self.cursors,
            scope,
            rows,
            limit,
            lambda row: [row["created_at"].isoformat(), str(row["id"])],
        )
        return Page(
            data=[user_out(row) for row in page],
            meta=PageMeta(count=len(page), next_cursor=next_cursor),
        )

    async def administer(
        self, actor: CurrentUser, user_id: uuid.UUID, change: AdminUserUpdate
    ) -> UserOut:
        """Admins (de)activate users; superadmins also change roles. Nobody changes themselves,
        and only a superadmin touches an admin or superadmin account."""
        target = await self.get(user_id)
        if user_id == actor.id:
            raise Forbidden("Administer your own account through /users/me.")
        if ROLE_RANK[target.role] >= ROLE_RANK["admin"] and actor.role != "superadmin":
            raise Forbidden("Only a superadmin can change an admin account.")
        if change.role is not msgspec.UNSET and actor.role != "superadmin":
            raise Forbidden("Only a superadmin can change roles.")
        values: dict[Any, Any] = {}
        if change.is_active is not msgspec.UNSET:
            values[User.is_active] = change.is_active
        if change.role is not msgspec.UNSET:
            values[User.role] = change.role
        if not values:
            return target
        values[User.updated_at] = now()
        async with User._meta.db.transaction():
            rows = await User.update(values).where(User.id == user_id).returning(*USER_COLUMNS)
            if change.is_active is False:
                await revoke_user_sessions(user_id, "deactivated")
        sessions_changed()  # a new role or is_active, now committed
        detail: dict[str, Any] = {
            key: value
            for key, value in (("is_active", change.is_active), ("role", change.role))
            if value is not msgspec.UNSET
        }
        await audit.record(
            "user_administered", self.client, user_id=user_id, by=str(actor.id), change=detail
        )
        return user_out(rows[0])
