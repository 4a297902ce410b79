"""Request and response shapes of /api/v1/auth."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from msgspec import Meta

from todo_api.core.schemas import END, Schema
from todo_api.users.schemas import User

DeviceName = Annotated[str, Meta(min_length=1, max_length=100)]
DeviceId = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=128,
        pattern=rf"^[A-Za-z0-9._:\-]+{END}",
        description="Client-generated, stable per install: a new login replaces its session",
    ),
]
ShortLabel = Annotated[str, Meta(min_length=1, max_length=50)]
Login = Annotated[str, Meta(min_length=1, max_length=320)]
AnyPassword = Annotated[str, Meta(min_length=1, max_length=1024)]


class LoginRequest(Schema):
    login: Annotated[Login, Meta(description="Email address or username")]
    password: AnyPassword
    device_name: DeviceName | None = None
    # The description is on DeviceId: a Meta around `DeviceId | None` would hide its constraints.
    device_id: DeviceId | None = None
    platform: ShortLabel | None = None
    app_version: ShortLabel | None = None


class TokenResponse(Schema):
    access_token: str
    expires_in: int
    session_id: uuid.UUID
    token_type: Literal["bearer"] = "bearer"


class LoginResponse(TokenResponse, kw_only=True):
    user: User


class OAuth2TokenResponse(Schema):
    access_token: str
    expires_in: int
    token_type: Literal["bearer"] = "bearer"


class Session(Schema):
    id: uuid.UUID
    device_name: str
    device_id: str | None
    platform: str | None
    app_version: str | None
    user_agent: str
    ip: str
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    current: bool = False


class SessionRename(Schema):
    device_name: DeviceName


class AuthEvent(Schema):
    id: uuid.UUID
    type: str
    session_id: uuid.UUID | None
    ip: str
    user_agent: str
    created_at: datetime
    detail: dict[str, Any]
