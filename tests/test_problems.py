"""Every error is an RFC 9457 problem: router errors here; feature modules cover their own."""

from __future__ import annotations

import httpx
import pytest

from tests.support.problems import assert_problem

pytestmark = pytest.mark.anyio


async def test_unknown_path_is_a_404_problem(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/api/v1/nothing-here"), 404)
    assert body["title"] == "Not Found"
    assert "detail" in body


async def test_wrong_method_is_a_405_problem_with_allow(client: httpx.AsyncClient) -> None:
    response = await client.delete("/health")
    body = assert_problem(response, 405)
    assert body["title"] == "Method Not Allowed"
    assert "GET" in response.headers["allow"]
