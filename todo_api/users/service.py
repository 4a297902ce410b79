"""Accounts: creating them, profiles, passwords, deletion and administration. This feature owns
the `app_user` table: other features read and write accounts only through the functions here."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg
import msgspec
from piccolo.custom_types import Combinable

from todo_api.auth import check_password_failures, end_sessions, record_event, sessions_changed
from todo_api.core import db
from todo_api.core.clock import now
from todo_api.core.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from todo_api.core.identity import ROLE_RANK, Actor, Client, CurrentUser, Role
from todo_api.core.pagination import Cursors, keyset_page
from todo_api.core.schemas import Page, PageMeta
from todo_api.users import schemas, tables
from todo_api.users.passwords import Passwords, is_known_hash

WRONG_PASSWORD = "The password is not correct."
# An account as the API shows it: the columns of schemas.User's fields.
COLUMNS = tuple(
    tables.User._meta.get_column_by_name(name) for name in schemas.User.__struct_fields__
)


def normalise_email(email: str) -> str:
    """Emails are stored in NFKC form and lower-cased, so the unique index is case- and
    look-alike-insensitive (and logins find them however they are typed)."""
    return schemas.normalised_email(email.strip()).lower()


def normalise_username(username: str | None) -> str | None:
    return username.lower() if username else None


def user_from_row(row: dict[str, Any]) -> schemas.User:
    return schemas.User(**{name: row[name] for name in schemas.User.__struct_fields__})


def _login_is(login: str) -> Combinable:
    """The account a login names: an email if it has an @, else a username."""
    value = normalise_email(login)
    return (tables.User.email if "@" in value else tables.User.username) == value


def _conflict(exc: asyncpg.UniqueViolationError) -> Conflict:
    field = "username" if "username" in (exc.constraint_name or "") else "email"
    return Conflict(f"An account with this {field} already exists.")


class LoginAccount(NamedTuple):
    user: schemas.User
    password_hash: str


class Administered(NamedTuple):
    user: schemas.User
    sessions_ended: int


async def account_for_login(login: str) -> LoginAccount | None:
    """The account an email or username names, with its password hash (for signing in)."""
    row = await (
        tables.User.select(*COLUMNS, tables.User.password_hash.as_alias("password_hash"))
        .where(_login_is(login))
        .first()
    )
    return None if row is None else LoginAccount(user_from_row(row), row["password_hash"])


async def find_account(text: str) -> schemas.User | None:
    """The account an email, username or id names (for operators)."""
    text = text.strip()
    where: Combinable
    try:
        where = tables.User.id == uuid.UUID(text)
    except ValueError:
        where = _login_is(text)
    row = await tables.User.select(*COLUMNS).where(where).first()
    return None if row is None else user_from_row(row)


async def note_login(user_id: uuid.UUID, moment: datetime) -> None:
    await tables.User.update({tables.User.last_login_at: moment}).where(tables.User.id == user_id)


def with_last_login(user: schemas.User, moment: datetime) -> schemas.User:
    return msgspec.structs.replace(user, last_login_at=moment)


async def replace_password_hash(user_id: uuid.UUID, password_hash: str) -> None:
    """Store a new hash of the same password (new hashing parameters): not a password change."""
    await tables.User.update({tables.User.password_hash: password_hash}).where(
        tables.User.id == user_id
    )


# Column names of the FastAPI to-do backends' user tables, and ours.
IMPORT_ALIASES = {"hashed_password": "password_hash", "full_name": "display_name"}


class ImportResult(NamedTuple):
    created: int
    skipped_existing: int


_TRUE, _FALSE = {"t", "true", "1", "yes", "y"}, {"f", "false", "0", "no", "n"}


def _flag(value: Any) -> Any:
    """A boolean as exports spell it (psql's CSV writes t/f), else the value unchanged."""
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    return value


def imported_account(fields: dict[str, Any]) -> schemas.ImportedAccount:
    """One row of an import (CSV strings or database values) as an account; ValueError if not
    one (the message never contains the hash). Columns we do not know are ignored."""
    values = {IMPORT_ALIASES.get(key, key): value for key, value in fields.items()}
    if _flag(values.get("is_superuser")) is True:
        values.setdefault("role", "superadmin")
    if "is_active" in values:
        values["is_active"] = _flag(values["is_active"])
    known = schemas.ImportedAccount.__struct_fields__
    values = {k: v for k, v in values.items() if k in known and v not in (None, "")}
    try:
        account = msgspec.convert(values, type=schemas.ImportedAccount, strict=False)
    except msgspec.ValidationError as exc:
        raise ValueError(str(exc)) from None
    if not is_known_hash(account.password_hash):
        raise ValueError(
            "the password hash is in a format we cannot check (argon2id, bcrypt, pbkdf2-sha256)"
        )
    return account


async def import_accounts(accounts: list[schemas.ImportedAccount], client: Client) -> ImportResult:
    """Create these accounts with their existing password hashes, in one transaction; an email or
    username already taken is skipped. Each hash becomes argon2id at the account's next login."""
    if not accounts:
        return ImportResult(0, 0)
    rows = [
        tables.User(
            {
                tables.User.email: normalise_email(account.email),
                tables.User.username: normalise_username(account.username),
                tables.User.display_name: account.display_name.strip(),
                tables.User.password_hash: account.password_hash,
                tables.User.is_active: account.is_active,
                tables.User.role: account.role,
            }
        )
        for account in accounts
    ]
    async with db.transaction():
        created = await (
            tables.User.insert(*rows)
            .on_conflict(action="DO NOTHING")
            .returning(tables.User.id, tables.User.role)
        )
        for row in created:
            await record_event("account_imported", client, user_id=row["id"], role=row["role"])
    return ImportResult(len(created), len(accounts) - len(created))


class UserService:
    """Accounts: creating them, what a caller may do to their own, what admins may do to others'."""

    def __init__(
        self,
        passwords: Passwords,
        cursors: Cursors,
        client: Client,
        password_failures: str | None = None,
    ) -> None:
        """`password_failures` (a rate, e.g. '10/hour'): wrong passwords an account may have
        before a re-entered one is refused unchecked (None where nobody re-enters one)."""
        self.passwords = passwords
        self.cursors = cursors
        self.client = client
        self.password_failures = password_failures

    async def create(self, data: schemas.RegisterRequest, role: Role = "user") -> schemas.User:
        """An account (registration, or an operator's `create-user` with any role)."""
        password_hash = await self.passwords.hash(data.password)
        values: dict[Any, Any] = {
            tables.User.email: normalise_email(data.email),
            tables.User.username: normalise_username(data.username),
            tables.User.display_name: data.display_name.strip(),
            tables.User.password_hash: password_hash,
            tables.User.role: role,
        }
        try:
            rows = await tables.User.insert(tables.User(values)).returning(*COLUMNS)
        except asyncpg.UniqueViolationError as exc:
            raise _conflict(exc) from None
        user = user_from_row(rows[0])
        await record_event("register", self.client, user_id=user.id, role=user.role)
        return user

    async def create_from_fields(self, email: str, password: str, role: Role) -> schemas.User:
        """`create` from an operator's arguments, validated as registration is."""
        try:
            data = msgspec.convert(
                {"email": email, "password": password}, type=schemas.RegisterRequest
            )
        except msgspec.ValidationError as exc:
            raise BadRequest(str(exc)) from None
        return await self.create(data, role)

    async def get(self, user_id: uuid.UUID) -> schemas.User:
        row = await tables.User.select(*COLUMNS).where(tables.User.id == user_id).first()
        if row is None:
            raise NotFound("No such user.")
        return user_from_row(row)

    async def update_profile(
        self, current: CurrentUser, change: schemas.ProfileUpdate
    ) -> schemas.User:
        values: dict[Any, Any] = {}
        if change.display_name is not msgspec.UNSET:
            values[tables.User.display_name] = change.display_name.strip()
        if change.username is not msgspec.UNSET:
            values[tables.User.username] = normalise_username(change.username)
        if change.email is not msgspec.UNSET:
            if change.current_password is msgspec.UNSET:
                raise Unauthorized("Changing the email needs `current_password`.")
            await self._check_password(current, change.current_password, "email_change")
            values[tables.User.email] = normalise_email(change.email)
        if not values:
            return await self.get(current.id)
        values[tables.User.updated_at] = now()
        try:
            rows = await (
                tables.User.update(values).where(tables.User.id == current.id).returning(*COLUMNS)
            )
        except asyncpg.UniqueViolationError as exc:
            raise _conflict(exc) from None
        if change.email is not msgspec.UNSET:
            await record_event("email_changed", self.client, user_id=current.id)
        return user_from_row(rows[0])

    async def change_password(self, current: CurrentUser, change: schemas.PasswordChange) -> None:
        await self._check_password(current, change.current_password, "password_change")
        new_hash = await self.passwords.hash(change.new_password)
        moment = now()
        async with db.transaction():
            await tables.User.update(
                {
                    tables.User.password_hash: new_hash,
                    tables.User.password_changed_at: moment,
                    tables.User.updated_at: moment,
                }
            ).where(tables.User.id == current.id)
            ended = await end_sessions(
                "password_changed", user_id=current.id, keep=current.session_id
            )
        await record_event(
            "password_changed",
            self.client,
            user_id=current.id,
            session_id=current.session_id,
            sessions_revoked=len(ended),
        )

    async def delete_account(self, current: CurrentUser, password: str) -> None:
        await self._check_password(current, password, "account_deletion")
        # Sessions (and to-dos) go with the row: their foreign keys cascade.
        await tables.User.delete().where(tables.User.id == current.id)
        sessions_changed()
        await record_event(
            "account_deleted", self.client, user_id=current.id, session_id=current.session_id
        )

    async def _check_password(self, current: CurrentUser, password: str, action: str) -> None:
        """The caller's password, re-entered for `action`: limited and audited like a sign-in,
        so a stolen access token is no way to guess it."""
        if self.password_failures is None:  # pragma: no cover - every caller is configured
            raise RuntimeError("this UserService cannot check passwords")
        await check_password_failures(current.id, self.password_failures, self.client)
        row = await (
            tables.User.select(tables.User.password_hash.as_alias("password_hash"))
            .where(tables.User.id == current.id)
            .first()
        )
        if not await self.passwords.verify(row["password_hash"] if row else None, password):
            await record_event(
                "password_check_failed",
                self.client,
                user_id=current.id,
                session_id=current.session_id,
                action=action,
            )
            raise Unauthorized(WRONG_PASSWORD)

    async def list_users(
        self, query: str | None, limit: int, cursor: str | None
    ) -> Page[schemas.User]:
        """Newest accounts first; `query` matches email or username, case-insensitively."""
        scope = f"users:{query or ''}"
        where: Combinable | None = None
        if query:
            pattern = db.like_pattern(query.strip().lower())
            where = tables.User.email.like(pattern) | tables.User.username.like(pattern)
        if cursor:
            created_at, user_id = self.cursors.decode(scope, cursor, 2)
            at = datetime.fromisoformat(created_at)
            after = (tables.User.created_at < at) | (
                (tables.User.created_at == at) & (tables.User.id < uuid.UUID(user_id))
            )
            where = after if where is None else where & after
        select = tables.User.select(*COLUMNS)
        if where is not None:
            select = select.where(where)
        rows = await select.order_by(tables.User.created_at, tables.User.id, ascending=False).limit(
            limit + 1
        )
        page, next_cursor = keyset_page(
            self.cursors,
            scope,
            rows,
            limit,
            lambda row: [row["created_at"].isoformat(), str(row["id"])],
        )
        return Page(
            data=[user_from_row(row) for row in page],
            meta=PageMeta(count=len(page), next_cursor=next_cursor),
        )

    async def administer(
        self, actor: Actor, user_id: uuid.UUID, change: schemas.AdminUserUpdate
    ) -> Administered:
        """Admins (de)activate users; superadmins also change roles. Nobody changes themselves,
        and only a superadmin touches an admin or superadmin account. Deactivating ends every
        session of the account."""
        target = await self.get(user_id)
        if user_id == actor.user_id:
            raise Forbidden("Administer your own account through /users/me.")
        if ROLE_RANK[target.role] >= ROLE_RANK["admin"] and actor.role != "superadmin":
            raise Forbidden("Only a superadmin can change an admin account.")
        if change.role is not msgspec.UNSET and actor.role != "superadmin":
            raise Forbidden("Only a superadmin can change roles.")
        values: dict[Any, Any] = {}
        if change.is_active is not msgspec.UNSET:
            values[tables.User.is_active] = change.is_active
        if change.role is not msgspec.UNSET:
            values[tables.User.role] = change.role
        if not values:
            return Administered(target, 0)
        values[tables.User.updated_at] = now()
        async with db.transaction():
            rows = await (
                tables.User.update(values).where(tables.User.id == user_id).returning(*COLUMNS)
            )
            ended = (
                await end_sessions("deactivated", user_id=user_id)
                if change.is_active is False
                else []
            )
            # A new role or activity: this process's session cache forgets it once committed.
            db.on_commit(sessions_changed)
        detail: dict[str, Any] = {
            key: value
            for key, value in (("is_active", change.is_active), ("role", change.role))
            if value is not msgspec.UNSET
        }
        await record_event(
            "user_administered", self.client, user_id=user_id, by=actor.name, change=detail
        )
        return Administered(user_from_row(rows[0]), len(ended))
