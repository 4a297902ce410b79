"""Request and response shapes of /api/v1/users."""

from __future__ import annotations

import re
import unicodedata
import uuid
from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta

from todo_api.core.identity import Role
from todo_api.core.schemas import CONTROL, END, INVISIBLE, SPACE, Schema

# What an address may not contain: spaces, controls, invisible format characters, and the
# characters of markup and of RFC 5322's quoted forms (which no one types, and which an address
# shown in a page or a mail must not carry).
EMAIL_CHAR = rf"[^@{SPACE}{CONTROL}{INVISIBLE}<>()\[\]\\,;:\"`]"
EMAIL_MAX_LENGTH = 320
_EMAIL = re.compile(rf"^{EMAIL_CHAR}+@{EMAIL_CHAR}+\.{EMAIL_CHAR}+$")


def normalised_email(value: str) -> str:
    """`value` in Unicode's compatibility form (NFKC: a full-width or other look-alike letter
    becomes the letter it looks like), where that form is itself a valid address; else `value`
    as it is (its compatibility form has characters no address may have, so it looks like no
    valid address)."""
    compatible = unicodedata.normalize("NFKC", value)
    fits = len(compatible) <= EMAIL_MAX_LENGTH  # one character can expand to several
    return compatible if fits and _EMAIL.match(compatible) else value


Email = Annotated[
    str,
    Meta(
        min_length=3,
        max_length=EMAIL_MAX_LENGTH,
        pattern=rf"^{EMAIL_CHAR}+@{EMAIL_CHAR}+\.{EMAIL_CHAR}+{END}",
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


class WithEmail(Schema):
    """A request carrying an address: stored in its NFKC form, so a look-alike of an existing
    address is that address (and a 409), not a second account."""

    def __post_init__(self) -> None:
        super().__post_init__()
        email = getattr(self, "email", None)
        if isinstance(email, str):
            msgspec.structs.force_setattr(self, "email", normalised_email(email))


class ProfileUpdate(WithEmail):
    display_name: DisplayName | msgspec.UnsetType = msgspec.UNSET
    username: Username | msgspec.UnsetType | None = msgspec.UNSET
    email: Email | msgspec.UnsetType = msgspec.UNSET
    current_password: (
        Annotated[str, Meta(max_length=1024, description="Required to change the email")]
        | msgspec.UnsetType
    ) = msgspec.UNSET


class RegisterRequest(WithEmail):
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


class ImportedAccount(WithEmail):
    """An account brought over from another backend, with its password hash as stored there."""

    email: Email
    password_hash: Annotated[str, Meta(min_length=1, max_length=255)]
    username: Username | None = None
    display_name: DisplayName = ""
    is_active: bool = True
    role: Role = "user"
