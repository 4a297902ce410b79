"""Helpers that create accounts and sessions through the real API."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx

PASSWORD = "correct horse battery staple"


@dataclass
class Device:
    """One logged-in device: its own cookie jar and access token."""

    client: httpx.AsyncClient
    user_id: str
    session_id: str
    access_token: str
    refresh_token: str
    email: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


async def register(
    client: httpx.AsyncClient, email: str | None = None, password: str = PASSWORD, **extra: Any
) -> dict[str, Any]:
    email = email or unique_email()
    response = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": password, **extra}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def refresh_cookie_of(response: httpx.Response) -> str:
    value = response.cookies.get("refresh_token")
    assert value, f"no refresh cookie in {response.headers.get_list('set-cookie')}"
    return value


async def login(
    client: httpx.AsyncClient, login_name: str, password: str = PASSWORD, **extra: Any
) -> Device:
    """Log in on a fresh cookie jar sharing `client`'s app, as a separate device would."""
    device = httpx.AsyncClient(transport=client._transport, base_url=client.base_url)
    response = await device.post(
        "/api/v1/auth/login", json={"login": login_name, "password": password, **extra}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    return Device(
        client=device,
        user_id=body["user"]["id"],
        session_id=body["session_id"],
        access_token=body["access_token"],
        refresh_token=refresh_cookie_of(response),
        email=body["user"]["email"],
    )


async def new_user(client: httpx.AsyncClient, **extra: Any) -> Device:
    """A registered user logged in on one device."""
    user = await register(client, **extra)
    return await login(client, user["email"])


async def refresh_with(client: httpx.AsyncClient, token: str, **headers: str) -> httpx.Response:
    """POST /refresh presenting `token` as the refresh cookie, from a jar-less client."""
    async with httpx.AsyncClient(
        transport=client._transport,
        base_url=client.base_url,
        headers={"Cookie": f"refresh_token={token}", **headers},
    ) as bare:
        return await bare.post("/api/v1/auth/refresh")
