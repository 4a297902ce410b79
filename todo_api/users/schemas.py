"""Request and response shapes of /api/v1/users."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta

from todo_api.core.identity import Role
from todo_api.core.schemas import END, SPACE, Schema

Email = Annotated[
    str,
    Meta(
        min_length=3,
        max_length=320,
        pattern=rf"^[^@{SPACE}]+@[^@{SPACE}]+\.[^@{SPACE}]+{END}",
    ),
]
Username = Annotated[
    str,
    Meta(
        min_length=3,
        max_length=50,
        pattern=rf"^[A-Za-z0-9_.\-]+{END}",
        description="3-50 of A-Z a-z 0-9 _ . - (stored lower-case)",
    ),
]
Password = Annotated[str, Meta(min_length=8, max_length=1024)]
DisplayName = Annotated[str, Meta(max_length=100)]


class User(Schema):
    id: uuid.UUID
    email: str
    username: str | None
    display_name: str
    role: Role
    is_active: bool
    created_at: datetime
    last_login_at: datetime | None = None


class ProfileUpdate(Schema):
    display_name: DisplayName | msgspec.UnsetType = msgspec.UNSET
    username: Username | msgspec.UnsetType | None = msgspec.UNSET
    email: Email | msgspec.UnsetType = msgspec.UNSET
    current_password: (
        Annotated[str, Meta(max_length=1024, description="Required to change the email")]
        | msgspec.UnsetType
    ) = msgspec.UNSET


class RegisterRequest(Schema):
    """A new account (registration; an operator's CLI adds a role)."""

    email: Email
    password: Password
    username: Username | None = None
    display_name: DisplayName = ""


class PasswordChange(Schema):
    current_password: Annotated[str, Meta(min_length=1, max_length=1024)]
    new_password: Password


class AccountDeletion(Schema):
    password: Annotated[str, Meta(min_length=1, max_length=1024)]


class AdminUserUpdate(Schema):
    is_active: bool | msgspec.UnsetType = msgspec.UNSET
    role: Role | msgspec.UnsetType = msgspec.UNSET


class ImportedAccount(Schema):
    """An account brought over from another backend, with its password hash as stored there."""

    email: Email
    password_hash: Annotated[str, Meta(min_length=1, max_length=255)]
    username: Username | None = None
    display_name: DisplayName = ""
    is_active: bool = True
    role: Role = "user"
