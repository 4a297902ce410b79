"""Every error is an RFC 9457 problem: router errors here; feature modules cover their own."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.anyio


def assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert isinstance(body["title"], str)
    assert body["title"]
    return body


async def test_unknown_path_is_a_404_problem(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/api/v1/nothing-here"), 404)
    assert body["title"] == "Not Found"
    assert "detail" in body


async def test_wrong_method_is_a_405_problem_with_allow(client: httpx.AsyncClient) -> None:
    response = await client.delete("/health")
    body = assert_problem(response, 405)
    assert body["title"] == "Method Not Allowed"
    assert "GET" in response.headers["allow"]
