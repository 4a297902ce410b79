"""To-dos, made through the real API."""

from __future__ import annotations

from typing import Any

from tests.support.accounts import Device

TODOS = "/api/v1/todos"


async def create_todo(device: Device, title: str = "Buy milk", **fields: Any) -> dict[str, Any]:
    """A new to-do of `device`'s user, as the API returned it."""
    response = await device.client.post(
        TODOS, json={"title": title, **fields}, headers=device.headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body
