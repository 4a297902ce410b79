"""Accounts and device sessions, made through the real API."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx

PASSWORD = "correct horse battery staple"
ME = "/api/v1/users/me"


@dataclass
class Device:
    """One logged-in device: the client it logged in on, and its tokens."""

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


def fresh_jar(client: httpx.AsyncClient, **options: Any) -> httpx.AsyncClient:
    """A client with a cookie jar of its own on `client`'s app, as another device or browser
    has; `options` (e.g. base_url, headers) go to httpx.AsyncClient."""
    return httpx.AsyncClient(
        transport=client._transport, **{"base_url": client.base_url, **options}
    )


async def register(
    client: httpx.AsyncClient,
    email: str | None = None,
    password: str = PASSWORD,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A new account (`extra` goes into the request body); its public profile."""
    email = email or unique_email()
    response = await client.post(
        "/api/v1/auth/register",
        json={"email": email, "password": password, **extra},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def refresh_cookie_of(response: httpx.Response) -> str:
    value = response.cookies.get("refresh_token")
    assert value, f"no refresh cookie in {response.headers.get_list('set-cookie')}"
    return value


async def login_on(
    client: httpx.AsyncClient,
    login_name: str,
    password: str = PASSWORD,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> Device:
    """Log in on `client` itself (for a client of a served process that keeps no cookies)."""
    response = await client.post(
        "/api/v1/auth/login",
        json={"login": login_name, "password": password, **extra},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    return Device(
        client=client,
        user_id=body["user"]["id"],
        session_id=body["session_id"],
        access_token=body["access_token"],
        refresh_token=refresh_cookie_of(response),
        email=body["user"]["email"],
    )


async def login(
    client: httpx.AsyncClient, login_name: str, password: str = PASSWORD, **extra: Any
) -> Device:
    """Log in on a fresh cookie jar sharing `client`'s app, as a separate device would."""
    return await login_on(fresh_jar(client), login_name, password, **extra)


async def new_user(client: httpx.AsyncClient, **extra: Any) -> Device:
    """A registered user logged in on one device."""
    user = await register(client, **extra)
    return await login(client, user["email"])


async def new_user_on(
    client: httpx.AsyncClient, *, headers: Mapping[str, str] | None = None
) -> Device:
    """A registered user logged in on `client` itself (see `login_on`)."""
    user = await register(client, headers=headers)
    return await login_on(client, user["email"], headers=headers)


async def set_role(conn: asyncpg.Connection, user_id: str, role: str) -> None:
    await conn.execute("UPDATE app_user SET role = $1 WHERE id = $2", role, uuid.UUID(user_id))


async def user_with_role(
    client: httpx.AsyncClient, conn: asyncpg.Connection, role: str, **extra: Any
) -> Device:
    """A registered account given `role` in the database before it logs in."""
    user = await register(client, **extra)
    await set_role(conn, user["id"], role)
    return await login(client, user["email"])


async def refresh_with(client: httpx.AsyncClient, token: str, **headers: str) -> httpx.Response:
    """POST /refresh presenting `token` as the refresh cookie, from a jar-less client."""
    async with fresh_jar(client, headers={"Cookie": f"refresh_token={token}", **headers}) as bare:
        return await bare.post("/api/v1/auth/refresh")


async def token_refused(client: httpx.AsyncClient, device: Device, *also: int) -> bool:
    """Whether `client` refuses `device`'s access token (401); an answer other than 200, 401 or
    one of `also` fails."""
    response = await client.get(ME, headers=device.headers)
    assert response.status_code in (200, 401, *also), response.text
    return response.status_code == 401
