"""/api/v1/todos one at a time: CRUD, trash, completion, ownership, If-Match, Idempotency-Key."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from litestar import Litestar

from tests.support.accounts import Device, fresh_jar, new_user
from tests.support.problems import assert_problem
from tests.support.routes import endpoints
from tests.support.todos import TODOS, create_todo

pytestmark = pytest.mark.anyio

TRASH = f"{TODOS}/trash"
TODO = f"{TODOS}/{{todo_id}}"
TODO_FIELDS = {
    "id",
    "title",
    "notes",
    "is_completed",
    "completed_at",
    "due_at",
    "priority",
    "position",
    "created_at",
    "updated_at",
    "version",
}


def todo_url(todo_id: str, action: str = "") -> str:
    return f"{TODOS}/{todo_id}" + (f"/{action}" if action else "")


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def call(
    device: Device,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """A request from `device`, authenticated by its bearer token."""
    return await device.client.request(
        method, path, headers={**device.headers, **(headers or {})}, **kwargs
    )


async def row_of(conn: asyncpg.Connection, todo_id: str) -> dict[str, Any] | None:
    """Everything stored for one to-do, straight from the database."""
    record = await conn.fetchrow("SELECT * FROM todo WHERE id = $1", uuid.UUID(todo_id))
    return dict(record) if record is not None else None


async def todo_count(conn: asyncpg.Connection, owner: str | None = None) -> int:
    if owner is None:
        count: int = await conn.fetchval("SELECT count(*) FROM todo")
    else:
        count = await conn.fetchval(
            'SELECT count(*) FROM todo WHERE "owner" = $1', uuid.UUID(owner)
        )
    return count


def assert_field_errors(response: httpx.Response) -> None:
    body = assert_problem(response, 400)
    errors = body.get("errors")
    assert isinstance(errors, list), body
    assert errors, body


def mismatch(case: str, response: httpx.Response, status: int, *, errors: bool = False) -> str:
    """Why `response` is not the expected problem, "" if it is: tables report every bad case."""
    try:
        if errors:
            assert_field_errors(response)
        else:
            assert_problem(response, status)
    except AssertionError:
        return f"{case}: {response.status_code} {response.text[:300]}"
    return ""


def assert_all_pass(failures: list[str]) -> None:
    found = [failure for failure in failures if failure]
    assert not found, "\n".join(found)


# The body that the tables of routes below send to each route that takes one: a new route with a
# body fails them until it has one here.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", TODOS): {"title": "changed"},
    ("PATCH", TODO): {"title": "changed"},
    ("PUT", TODO): {"title": "changed", "is_completed": True},
}
# An empty PATCH writes nothing, so it takes a path of its own through the app: tables have it too.
EMPTY_PATCH: tuple[str, str, dict[str, Any] | None] = ("PATCH", "", {})


def calls_on_one_todo(
    app: Litestar, header: str | None = None
) -> list[tuple[str, str, dict[str, Any] | None]]:
    """(method, action, body) of every route on one to-do in the app's route table (action: the
    path after the id), or of those that take the request header `header`."""
    calls = []
    for endpoint in endpoints(app, under=TODO):
        endpoint.url(todo_id="")  # fails for a path parameter that todo_url cannot fill
        if header is None or header in endpoint.parameters("header"):
            action = endpoint.path.removeprefix(TODO).lstrip("/")
            calls.append((endpoint.method, action, endpoint.body(BODIES)))
    return calls


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> Device:
    return await new_user(client)


@pytest.fixture
async def bob(client: httpx.AsyncClient) -> Device:
    return await new_user(client)


# --- create and read --------------------------------------------------------------------------


async def test_create_returns_201_with_location_etag_trimmed_title_and_defaults(
    alice: Device, conn: asyncpg.Connection
) -> None:
    before = datetime.now(UTC)
    response = await call(alice, "POST", TODOS, json={"title": "  Buy milk \n"})

    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == TODO_FIELDS
    assert response.headers["location"] == f"{TODOS}/{body['id']}"
    assert response.headers["etag"] == '"1"'
    assert "idempotent-replayed" not in response.headers
    assert body["title"] == "Buy milk"
    assert body["notes"] == ""
    assert body["is_completed"] is False
    assert body["completed_at"] is None
    assert body["due_at"] is None
    assert body["priority"] == 0
    assert body["position"] == 0.0
    assert body["version"] == 1
    assert body["created_at"] == body["updated_at"]
    assert when(body["created_at"]) >= before.replace(microsecond=0)
    assert when(body["created_at"]).utcoffset() is not None

    row = await row_of(conn, body["id"])
    assert row is not None
    assert str(row["owner"]) == alice.user_id
    assert row["title"] == "Buy milk"
    assert row["notes"] == ""
    assert row["version"] == 1
    assert row["deleted_at"] is None
    assert row["is_completed"] is False


async def test_create_stores_every_given_field(alice: Device, conn: asyncpg.Connection) -> None:
    body = await create_todo(
        alice,
        title="Call mum",
        notes="About Sunday\nand the cake",
        due_at="2030-01-31T09:00:00+02:00",
        priority=3,
        position=-12.5,
    )

    assert body["notes"] == "About Sunday\nand the cake"
    assert when(body["due_at"]) == datetime(2030, 1, 31, 7, 0, tzinfo=UTC)
    assert body["priority"] == 3
    assert body["position"] == -12.5
    row = await row_of(conn, body["id"])
    assert row is not None
    assert row["due_at"] == datetime(2030, 1, 31, 7, 0, tzinfo=UTC)
    assert (row["priority"], row["position"], row["notes"]) == (3, -12.5, body["notes"])


async def test_get_returns_the_todo_with_its_etag(alice: Device) -> None:
    created = await create_todo(alice, notes="n", priority=2)

    response = await call(alice, "GET", todo_url(created["id"]))

    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"1"'
    assert response.json() == created


async def test_get_unknown_todo_is_a_404_problem(alice: Device) -> None:
    assert_problem(await call(alice, "GET", todo_url(str(uuid.uuid4()))), 404)


ACCEPTED_AT_THE_LIMITS: dict[str, dict[str, Any]] = {
    "title-500-chars": {"title": "x" * 500},
    "title-500-non-ascii": {"title": "é" * 500},
    "notes-10000-chars": {"notes": "n" * 10_000},
    "priority-0": {"priority": 0},
    "priority-3": {"priority": 3},
    "position-max": {"position": 1e15},
    "position-min": {"position": -1e15},
    "due-at-null": {"due_at": None},
    "notes-unicode": {"notes": "emoji \U0001f600 and tabs\t"},
}


async def test_create_accepts_values_at_the_limits(alice: Device, conn: asyncpg.Connection) -> None:
    for case, fields in ACCEPTED_AT_THE_LIMITS.items():
        response = await call(alice, "POST", TODOS, json={"title": "t", **fields})
        assert response.status_code == 201, (case, response.text)
        body = response.json()
        row = await row_of(conn, body["id"])
        assert row is not None
        for name, value in fields.items():
            assert body[name] == value, case
            assert row[name] == value, case


@pytest.mark.parametrize(
    "due_at",
    ["9999-12-31T23:59:59.999999Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999998Z"],
)
async def test_due_at_at_the_ends_of_the_calendar_is_stored_exactly_or_refused(
    alice: Device, conn: asyncpg.Connection, due_at: str
) -> None:
    response = await call(alice, "POST", TODOS, json={"title": "t", "due_at": due_at})

    if response.status_code == 400:
        assert_field_errors(response)
        assert await todo_count(conn) == 0
        return
    assert response.status_code == 201, response.text
    returned = when(response.json()["due_at"])
    assert returned.utcoffset() is not None, response.json()["due_at"]
    assert returned == when(due_at)
    stored = await conn.fetchval(
        "SELECT due_at::text FROM todo WHERE id = $1", uuid.UUID(response.json()["id"])
    )
    assert "infinity" not in stored


INVALID_CREATE_BODIES: dict[str, Any] = {
    "title-missing": {},
    "title-empty": {"title": ""},
    "title-whitespace-only": {"title": "   \t\n "},
    "title-null": {"title": None},
    "title-number": {"title": 5},
    "title-501-chars": {"title": "x" * 501},
    "notes-10001-chars": {"title": "t", "notes": "n" * 10_001},
    "notes-null": {"title": "t", "notes": None},
    "priority-negative": {"title": "t", "priority": -1},
    "priority-4": {"title": "t", "priority": 4},
    "priority-huge": {"title": "t", "priority": 10**30},
    "priority-string": {"title": "t", "priority": "2"},
    "priority-float": {"title": "t", "priority": 1.5},
    "priority-bool": {"title": "t", "priority": True},
    "due-at-naive": {"title": "t", "due_at": "2030-01-31T09:00:00"},
    "due-at-not-a-date": {"title": "t", "due_at": "tomorrow"},
    "due-at-impossible": {"title": "t", "due_at": "2030-02-30T09:00:00Z"},
    "due-at-number": {"title": "t", "due_at": 1893456000},
    "title-nul": {"title": "a\x00b"},
    "notes-nul": {"title": "t", "notes": "a\x00b"},
    "unknown-field-owner": {"title": "t", "owner": str(uuid.uuid4())},
    "unknown-field-version": {"title": "t", "version": 7},
    "unknown-field-is-completed": {"title": "t", "is_completed": True},
    "position-too-big": {"title": "t", "position": 1e16},
    "position-too-small": {"title": "t", "position": -1e16},
    "position-string": {"title": "t", "position": "1"},
    "array": ["Buy milk"],
    "string": "Buy milk",
    "number": 42,
    "null": None,
}
MALFORMED_JSON: dict[str, bytes] = {
    "truncated": b'{"title": ',
    "single-quotes": b"{'title': 'x'}",
    "trailing-comma": b'{"title": "x",}',
    "position-overflows-to-inf": b'{"title": "t", "position": 1e400}',
    "position-nan": b'{"title": "t", "position": NaN}',
}


async def test_invalid_create_body_is_a_400_problem_with_field_errors_and_stores_nothing(
    alice: Device, conn: asyncpg.Connection
) -> None:
    failures = []
    for case, payload in INVALID_CREATE_BODIES.items():
        response = await call(alice, "POST", TODOS, json=payload)
        failures.append(mismatch(case, response, 400, errors=True))
    assert_all_pass(failures)
    assert await todo_count(conn) == 0


async def test_malformed_json_create_body_is_a_400_problem_with_errors_and_stores_nothing(
    alice: Device, conn: asyncpg.Connection
) -> None:
    failures = []
    for case, content in MALFORMED_JSON.items():
        response = await call(
            alice, "POST", TODOS, content=content, headers={"Content-Type": "application/json"}
        )
        failures.append(mismatch(case, response, 400, errors=True))
    assert_all_pass(failures)
    assert await todo_count(conn) == 0


async def test_nul_in_path_or_query_is_a_4xx_problem(alice: Device) -> None:
    for path in [
        f"{TODOS}/%00",
        f"{TODOS}/{uuid.UUID(int=1)}%00",
        f"{TODOS}/{uuid.UUID(int=1)}/complete%00",
        f"{TODOS}?q=%00",
        f"{TODOS}?cursor=%00",
        f"{TRASH}?cursor=abc%00",
    ]:
        response = await call(alice, "GET", path)
        assert 400 <= response.status_code < 500, (path, response.text)
        assert response.headers["content-type"] == "application/problem+json", path


# --- partial update ---------------------------------------------------------------------------


async def test_patch_changes_only_the_given_fields_and_bumps_the_version(
    alice: Device, conn: asyncpg.Connection
) -> None:
    created = await create_todo(
        alice, notes="keep me", due_at="2030-01-01T00:00:00Z", priority=1, position=4.0
    )

    response = await call(
        alice, "PATCH", todo_url(created["id"]), json={"title": "  Buy oat milk  ", "priority": 2}
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert response.headers["etag"] == '"2"'
    assert body["version"] == 2
    assert body["title"] == "Buy oat milk"
    assert body["priority"] == 2
    for unchanged in ("id", "notes", "due_at", "position", "is_completed", "created_at"):
        assert body[unchanged] == created[unchanged]
    assert when(body["updated_at"]) > when(created["updated_at"])
    row = await row_of(conn, created["id"])
    assert row is not None
    assert (row["title"], row["priority"], row["notes"], row["version"]) == (
        "Buy oat milk",
        2,
        "keep me",
        2,
    )
    fetched = await call(alice, "GET", todo_url(created["id"]))
    assert fetched.headers["etag"] == '"2"'
    assert fetched.json() == body


async def test_patch_every_field_at_once(alice: Device, conn: asyncpg.Connection) -> None:
    created = await create_todo(alice)
    change = {
        "title": "New",
        "notes": "new notes",
        "due_at": "2031-05-05T05:05:05-03:00",
        "priority": 3,
        "position": 99.25,
    }

    response = await call(alice, "PATCH", todo_url(created["id"]), json=change)

    assert response.status_code == 200, response.text
    body = response.json()
    assert when(body["due_at"]) == datetime(2031, 5, 5, 8, 5, 5, tzinfo=UTC)
    assert {k: body[k] for k in ("title", "notes", "priority", "position")} == {
        "title": "New",
        "notes": "new notes",
        "priority": 3,
        "position": 99.25,
    }
    row = await row_of(conn, created["id"])
    assert row is not None
    assert row["due_at"] == datetime(2031, 5, 5, 8, 5, 5, tzinfo=UTC)
    assert row["version"] == 2


async def test_patch_null_due_at_clears_it(alice: Device, conn: asyncpg.Connection) -> None:
    created = await create_todo(alice, due_at="2030-01-01T00:00:00Z")

    response = await call(alice, "PATCH", todo_url(created["id"]), json={"due_at": None})

    assert response.status_code == 200, response.text
    assert response.json()["due_at"] is None
    assert response.json()["version"] == 2
    row = await row_of(conn, created["id"])
    assert row is not None
    assert row["due_at"] is None


INVALID_PATCH_BODIES: dict[str, Any] = {
    "title-null": {"title": None},
    "notes-null": {"notes": None},
    "priority-null": {"priority": None},
    "position-null": {"position": None},
    "title-empty": {"title": ""},
    "title-blank": {"title": "  "},
    "title-too-long": {"title": "x" * 501},
    "notes-too-long": {"notes": "n" * 10_001},
    "priority-4": {"priority": 4},
    "priority-negative": {"priority": -1},
    "priority-string": {"priority": "3"},
    "due-at-naive": {"due_at": "2030-01-01T00:00:00"},
    "due-at-not-a-date": {"due_at": "soon"},
    "position-too-big": {"position": 2e15},
    "notes-nul": {"notes": "\x00"},
    "title-nul": {"title": "to\x00do"},
    "unknown-field-owner": {"title": "ok", "owner": "00000000-0000-0000-0000-000000000000"},
    "unknown-field-version": {"version": 9},
    "unknown-field-deleted-at": {"deleted_at": None},
    "array": [],
    "null": None,
}


async def test_invalid_patch_is_a_400_problem_with_field_errors_and_changes_nothing(
    alice: Device, conn: asyncpg.Connection
) -> None:
    created = await create_todo(alice, due_at="2030-01-01T00:00:00Z")
    before = await row_of(conn, created["id"])
    failures = []
    for case, change in INVALID_PATCH_BODIES.items():
        response = await call(alice, "PATCH", todo_url(created["id"]), json=change)
        failures.append(mismatch(case, response, 400, errors=True))
    response = await call(
        alice,
        "PATCH",
        todo_url(created["id"]),
        content=b'{"title": "x"',
        headers={"Content-Type": "application/json"},
    )
    failures.append(mismatch("truncated-json", response, 400, errors=True))
    assert_all_pass(failures)
    assert await row_of(conn, created["id"]) == before


async def test_empty_patch_returns_the_todo_unchanged(
    alice: Device, conn: asyncpg.Connection
) -> None:
    created = await create_todo(alice, notes="n")
    before = await row_of(conn, created["id"])

    response = await call(alice, "PATCH", todo_url(created["id"]), json={})

    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"1"'
    assert response.json() == created
    assert await row_of(conn, created["id"]) == before


async def test_empty_patch_of_unknown_todo_is_404(alice: Device) -> None:
    assert_problem(await call(alice, "PATCH", todo_url(str(uuid.uuid4())), json={}), 404)


# --- delete, trash, restore -------------------------------------------------------------------


async def test_delete_leaves_a_tombstone_and_the_todo_is_gone_for_every_route(
    app: Litestar, alice: Device, conn: asyncpg.Connection
) -> None:
    created = await create_todo(alice)

    response = await call(alice, "DELETE", todo_url(created["id"]))

    assert response.status_code == 204, response.text
    assert response.content == b""
    row = await row_of(conn, created["id"])
    assert row is not None
    assert row["deleted_at"] is not None
    assert row["version"] == 2
    tombstone = dict(row)
    # Restoring is the one thing a deleted to-do is there for.
    routes = [route for route in calls_on_one_todo(app) if route[:2] != ("POST", "restore")]
    assert len(routes) == len(calls_on_one_todo(app)) - 1
    for method, action, payload in [*routes, EMPTY_PATCH]:
        again = await call(alice, method, todo_url(created["id"], action), json=payload)
        assert_problem(again, 404)
    assert await row_of(conn, created["id"]) == tombstone


async def test_trash_lists_deleted_todos_newest_deletion_first(
    alice: Device, conn: asyncpg.Connection
) -> None:
    first = await create_todo(alice, title="first")
    second = await create_todo(alice, title="second")
    await create_todo(alice, title="still here")
    assert (await call(alice, "DELETE", todo_url(second["id"]))).status_code == 204
    assert (await call(alice, "DELETE", todo_url(first["id"]))).status_code == 204

    response = await call(alice, "GET", TRASH)

    assert response.status_code == 200, response.text
    body = response.json()
    assert [item["id"] for item in body["data"]] == [first["id"], second["id"]]
    assert body["meta"]["count"] == 2
    assert body["meta"]["next_cursor"] is None
    for item in body["data"]:
        assert set(item) == TODO_FIELDS | {"deleted_at"}
        row = await row_of(conn, item["id"])
        assert row is not None
        assert when(item["deleted_at"]) == row["deleted_at"]
        assert item["version"] == 2
    assert when(body["data"][0]["deleted_at"]) >= when(body["data"][1]["deleted_at"])


async def test_trash_shows_only_my_deleted_todos(alice: Device, bob: Device) -> None:
    mine = await create_todo(alice)
    theirs = await create_todo(bob)
    await call(alice, "DELETE", todo_url(mine["id"]))
    await call(bob, "DELETE", todo_url(theirs["id"]))

    response = await call(alice, "GET", TRASH)

    assert [item["id"] for item in response.json()["data"]] == [mine["id"]]


async def test_restore_brings_a_deleted_todo_back_with_a_new_version(
    alice: Device, conn: asyncpg.Connection
) -> None:
    created = await create_todo(alice, notes="precious", priority=2)
    await call(alice, "DELETE", todo_url(created["id"]))

    response = await call(alice, "POST", todo_url(created["id"], "restore"))

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == TODO_FIELDS
    assert body["version"] == 3
    assert response.headers["etag"] == '"3"'
    assert (body["title"], body["notes"], body["priority"]) == ("Buy milk", "precious", 2)
    row = await row_of(conn, created["id"])
    assert row is not None
    assert row["deleted_at"] is None
    assert row["version"] == 3
    fetched = await call(alice, "GET", todo_url(created["id"]))
    assert fetched.status_code == 200
    assert fetched.json() == body
    assert (await call(alice, "GET", TRASH)).json()["data"] == []


async def test_restore_of_a_live_unknown_or_already_restored_todo_is_404(
    alice: Device, conn: asyncpg.Connection
) -> None:
    live = await create_todo(alice)
    restored = await create_todo(alice)
    await call(alice, "DELETE", todo_url(restored["id"]))
    assert (await call(alice, "POST", todo_url(restored["id"], "restore"))).status_code == 200
    before = {t: await row_of(conn, t) for t in (live["id"], restored["id"])}

    for todo_id in (live["id"], str(uuid.uuid4()), restored["id"]):
        assert_problem(await call(alice, "POST", todo_url(todo_id, "restore")), 404)

    assert {t: await row_of(conn, t) for t in before} == before


# --- completion -------------------------------------------------------------------------------


async def test_complete_sets_completed_at_once_and_repeating_keeps_the_first(
    alice: Device, conn: asyncpg.Connection
) -> None:
    created = await create_todo(alice)

    done = await call(alice, "PATCH", todo_url(created["id"], "complete"))

    assert done.status_code == 200, done.text
    first = done.json()
    assert first["is_completed"] is True
    assert first["completed_at"] is not None
    assert first["version"] == 2
    assert done.headers["etag"] == '"2"'
    row = await row_of(conn, created["id"])
    assert row is not None
    assert row["completed_at"] == when(first["completed_at"])

    again = await call(alice, "PATCH", todo_url(created["id"], "complete"))

    assert again.status_code == 200, again.text
    assert again.headers["etag"] == '"2"'
    assert again.json() == first
    assert await row_of(conn, created["id"]) == row


async def test_reopen_clears_completed_at_and_repeating_is_a_no_op(
    alice: Device, conn: asyncpg.Connection
) -> None:
    created = await create_todo(alice)
    await call(alice, "PATCH", todo_url(created["id"], "complete"))

    reopened = await call(alice, "PATCH", todo_url(created["id"], "reopen"))

    assert reopened.status_code == 200, reopened.text
    body = reopened.json()
    assert body["is_completed"] is False
    assert body["completed_at"] is None
    assert body["version"] == 3
    assert reopened.headers["etag"] == '"3"'
    row = await row_of(conn, created["id"])
    assert row is not None
    assert (row["is_completed"], row["completed_at"], row["version"]) == (False, None, 3)

    again = await call(alice, "PATCH", todo_url(created["id"], "reopen"))

    assert again.status_code == 200, again.text
    assert again.json() == body
    assert await row_of(conn, created["id"]) == row


async def test_reopening_a_never_completed_todo_changes_nothing(
    alice: Device, conn: asyncpg.Connection
) -> None:
    created = await create_todo(alice)
    before = await row_of(conn, created["id"])

    response = await call(alice, "PATCH", todo_url(created["id"], "reopen"))

    assert response.status_code == 200, response.text
    assert response.json() == created
    assert await row_of(conn, created["id"]) == before


async def test_completing_again_after_reopen_sets_a_new_completed_at(alice: Device) -> None:
    created = await create_todo(alice)
    first = (await call(alice, "PATCH", todo_url(created["id"], "complete"))).json()
    await call(alice, "PATCH", todo_url(created["id"], "reopen"))

    second = (await call(alice, "PATCH", todo_url(created["id"], "complete"))).json()

    assert second["version"] == 4
    assert when(second["completed_at"]) > when(first["completed_at"])


async def test_ten_concurrent_completes_apply_once(alice: Device, conn: asyncpg.Connection) -> None:
    created = await create_todo(alice)

    responses = await asyncio.gather(
        *(call(alice, "PATCH", todo_url(created["id"], "complete")) for _ in range(10))
    )

    assert [r.status_code for r in responses] == [200] * 10
    assert len({r.json()["completed_at"] for r in responses}) == 1
    assert {r.json()["version"] for r in responses} == {2}
    row = await row_of(conn, created["id"])
    assert row is not None
    assert row["version"] == 2
    assert row["completed_at"] == when(responses[0].json()["completed_at"])


# --- ownership and authentication -------------------------------------------------------------

# (method, action) -> what the owner did first so that the action would change something
PREPARE = {("PATCH", "reopen"): "complete", ("POST", "restore"): "delete"}


async def test_another_users_todo_is_a_404_on_every_route_and_stays_untouched(
    app: Litestar, alice: Device, bob: Device, conn: asyncpg.Connection
) -> None:
    failures = []
    for method, action, payload in [*calls_on_one_todo(app), EMPTY_PATCH]:
        prepare = PREPARE.get((method, action), "")
        created = await create_todo(alice)
        if prepare == "complete":
            await call(alice, "PATCH", todo_url(created["id"], "complete"))
        elif prepare == "delete":
            await call(alice, "DELETE", todo_url(created["id"]))
        before = await row_of(conn, created["id"])
        case = f"{method} {action or '/'}"

        response = await call(bob, method, todo_url(created["id"], action), json=payload)
        failures.append(mismatch(case, response, 404))
        # With If-Match too: a version mismatch must not reveal that the to-do exists.
        response = await call(
            bob, method, todo_url(created["id"], action), json=payload, headers={"If-Match": '"9"'}
        )
        failures.append(mismatch(f"{case} If-Match", response, 404))
        if await row_of(conn, created["id"]) != before:
            failures.append(f"{case}: the owner's row changed")
    assert_all_pass(failures)


async def test_other_users_todo_and_an_unknown_id_answer_alike(alice: Device, bob: Device) -> None:
    created = await create_todo(alice)

    theirs = await call(bob, "GET", todo_url(created["id"]))
    unknown = await call(bob, "GET", todo_url(str(uuid.uuid4())))

    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json() == unknown.json()


@pytest.mark.parametrize("credentials", ["none", "garbage-bearer"])
async def test_every_todo_route_requires_authentication(
    app: Litestar,
    client: httpx.AsyncClient,
    alice: Device,
    conn: asyncpg.Connection,
    credentials: str,
) -> None:
    created = await create_todo(alice)
    before = await row_of(conn, created["id"])
    headers = {"Authorization": "Bearer not.a.token"} if credentials != "none" else {}
    routes = endpoints(app, under=TODOS)
    assert len(routes) >= 10
    async with fresh_jar(client) as bare:
        for endpoint in routes:
            method, path = endpoint.method, endpoint.url(todo_id=created["id"])
            payload = endpoint.body(BODIES)
            response = await bare.request(method, path, json=payload, headers=headers)
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["www-authenticate"].startswith("Bearer")
    assert await row_of(conn, created["id"]) == before
    assert await todo_count(conn) == 1


# --- conditional writes (If-Match) ------------------------------------------------------------


async def test_write_with_a_matching_or_wildcard_if_match_applies(
    app: Litestar, alice: Device, conn: asyncpg.Connection
) -> None:
    writes = calls_on_one_todo(app, header="If-Match")
    assert len(writes) >= 4
    for method, action, payload in writes:
        for if_match in ('"2"', ' "2" ', "*"):
            case = (method, action, if_match)
            created = await create_todo(alice)
            # Version 2, and completed so that reopening has something to do.
            await call(alice, "PATCH", todo_url(created["id"], "complete"))

            response = await call(
                alice,
                method,
                todo_url(created["id"], action),
                json=payload,
                headers={"If-Match": if_match},
            )

            assert response.status_code == (204 if method == "DELETE" else 200), (
                case,
                response.text,
            )
            if method != "DELETE":
                assert response.headers["etag"] == ('"2"' if action == "complete" else '"3"'), case
            row = await row_of(conn, created["id"])
            assert row is not None
            if action == "complete":  # already done: nothing to apply, nothing bumped
                assert (row["version"], row["is_completed"]) == (2, True), case
                continue
            assert row["version"] == 3, case
            if method == "DELETE":
                assert row["deleted_at"] is not None, case
            elif action == "reopen":
                assert row["is_completed"] is False, case
            else:
                assert row["title"] == "changed", case


async def test_complete_with_a_matching_if_match_applies(
    alice: Device, conn: asyncpg.Connection
) -> None:
    created = await create_todo(alice)

    response = await call(
        alice, "PATCH", todo_url(created["id"], "complete"), headers={"If-Match": '"1"'}
    )

    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"2"'
    row = await row_of(conn, created["id"])
    assert row is not None
    assert (row["is_completed"], row["version"]) == (True, 2)


async def test_write_with_a_stale_if_match_is_412_with_the_current_etag_and_changes_nothing(
    app: Litestar, alice: Device, conn: asyncpg.Connection
) -> None:
    failures = []
    for method, action, payload in [*calls_on_one_todo(app, header="If-Match"), EMPTY_PATCH]:
        created = await create_todo(alice)
        await call(alice, "PATCH", todo_url(created["id"]), json={"title": "moved on"})
        if action == "reopen":
            await call(alice, "PATCH", todo_url(created["id"], "complete"))
        before = await row_of(conn, created["id"])
        assert before is not None
        current = f'"{before["version"]}"'
        for stale in ('"1"', '"0"', '"999999999"'):
            case = f"{method} {action or '/'} {payload} If-Match {stale}"
            response = await call(
                alice,
                method,
                todo_url(created["id"], action),
                json=payload,
                headers={"If-Match": stale},
            )
            failures.append(mismatch(case, response, 412))
            if response.headers.get("etag") != current:
                failures.append(f"{case}: ETag {response.headers.get('etag')} != {current}")
        if await row_of(conn, created["id"]) != before:
            failures.append(f"{method} {action}: the row changed")
    assert_all_pass(failures)


async def test_stale_if_match_on_an_already_completed_todo_is_still_412(
    alice: Device, conn: asyncpg.Connection
) -> None:
    created = await create_todo(alice)
    await call(alice, "PATCH", todo_url(created["id"], "complete"))
    before = await row_of(conn, created["id"])

    response = await call(
        alice, "PATCH", todo_url(created["id"], "complete"), headers={"If-Match": '"1"'}
    )

    assert_problem(response, 412)
    assert response.headers["etag"] == '"2"'
    assert await row_of(conn, created["id"]) == before


MALFORMED_IF_MATCH = [
    "abc",
    "1",
    'W/"1"',
    '""',
    '"-1"',
    '"1.0"',
    '"1234567890"',
    '"' + "1" * 300 + '"',
    '"1',
]


async def test_malformed_if_match_is_a_400_problem_and_changes_nothing(
    app: Litestar, alice: Device, conn: asyncpg.Connection
) -> None:
    created = await create_todo(alice)
    before = await row_of(conn, created["id"])
    failures = []
    for method, action, payload in calls_on_one_todo(app, header="If-Match"):
        for if_match in MALFORMED_IF_MATCH:
            response = await call(
                alice,
                method,
                todo_url(created["id"], action),
                json=payload,
                headers={"If-Match": if_match},
            )
            failures.append(
                mismatch(f"{method} {action or '/'} If-Match {if_match}", response, 400)
            )
    assert_all_pass(failures)
    assert await row_of(conn, created["id"]) == before


async def test_writes_without_if_match_apply_and_the_last_one_wins(
    alice: Device, conn: asyncpg.Connection
) -> None:
    created = await create_todo(alice)
    phone = await call(alice, "PATCH", todo_url(created["id"]), json={"title": "from phone"})
    laptop = await call(alice, "PATCH", todo_url(created["id"]), json={"title": "from laptop"})

    assert (phone.status_code, laptop.status_code) == (200, 200)
    assert laptop.json()["version"] == 3
    row = await row_of(conn, created["id"])
    assert row is not None
    assert (row["title"], row["version"]) == ("from laptop", 3)


async def test_if_match_on_a_deleted_todo_is_404_not_412(alice: Device) -> None:
    created = await create_todo(alice)
    await call(alice, "DELETE", todo_url(created["id"]))

    response = await call(
        alice, "PATCH", todo_url(created["id"]), json={"title": "x"}, headers={"If-Match": '"1"'}
    )

    assert_problem(response, 404)


async def test_twenty_concurrent_patches_with_one_etag_let_exactly_one_win(
    alice: Device, conn: asyncpg.Connection
) -> None:
    created = await create_todo(alice)
    etag = (await call(alice, "GET", todo_url(created["id"]))).headers["etag"]

    responses = await asyncio.gather(
        *(
            call(
                alice,
                "PATCH",
                todo_url(created["id"]),
                json={"title": f"writer {n}"},
                headers={"If-Match": etag},
            )
            for n in range(20)
        )
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [412] * 19, [r.text for r in responses]
    winner = next(r for r in responses if r.status_code == 200).json()
    assert winner["version"] == 2
    for loser in (r for r in responses if r.status_code == 412):
        assert_problem(loser, 412)
        assert loser.headers["etag"] == '"2"'
    row = await row_of(conn, created["id"])
    assert row is not None
    assert (row["title"], row["version"]) == (winner["title"], winner["version"])


# --- idempotent creation (Idempotency-Key) ----------------------------------------------------


async def test_retried_create_with_one_idempotency_key_replays_the_first_response(
    alice: Device, conn: asyncpg.Connection
) -> None:
    payload = {"title": "Pay rent", "due_at": "2030-03-01T12:00:00+01:00", "priority": 3}
    headers = {"Idempotency-Key": "k"}

    first = await call(alice, "POST", TODOS, json=payload, headers=headers)
    second = await call(alice, "POST", TODOS, json=payload, headers=headers)

    assert (first.status_code, second.status_code) == (201, 201), second.text
    assert second.json() == first.json()
    assert second.headers["location"] == first.headers["location"]
    assert second.headers["etag"] == first.headers["etag"] == '"1"'
    assert "idempotent-replayed" not in first.headers
    assert second.headers["idempotent-replayed"] == "true"
    assert await todo_count(conn) == 1
    row = await row_of(conn, first.json()["id"])
    assert row is not None
    assert row["title"] == "Pay rent"


async def test_idempotency_key_reused_with_another_body_is_a_422_problem(
    alice: Device, conn: asyncpg.Connection
) -> None:
    headers = {"Idempotency-Key": "k"}
    first = await call(alice, "POST", TODOS, json={"title": "Pay rent"}, headers=headers)
    assert first.status_code == 201

    response = await call(alice, "POST", TODOS, json={"title": "Pay bills"}, headers=headers)

    assert_problem(response, 422)
    assert "idempotent-replayed" not in response.headers
    assert await todo_count(conn) == 1


async def test_without_an_idempotency_key_every_post_creates_a_todo(
    alice: Device, conn: asyncpg.Connection
) -> None:
    first = await create_todo(alice, title="same")
    second = await create_todo(alice, title="same")

    assert first["id"] != second["id"]
    assert await todo_count(conn) == 2


async def test_idempotency_keys_belong_to_one_user(
    alice: Device, bob: Device, conn: asyncpg.Connection
) -> None:
    payload, headers = {"title": "Shared key"}, {"Idempotency-Key": "k"}
    mine = await call(alice, "POST", TODOS, json=payload, headers=headers)

    theirs = await call(bob, "POST", TODOS, json=payload, headers=headers)
    different = await call(
        bob, "POST", TODOS, json={"title": "else"}, headers={"Idempotency-Key": "k2"}
    )

    assert (mine.status_code, theirs.status_code, different.status_code) == (201, 201, 201)
    assert theirs.json()["id"] != mine.json()["id"]
    assert "idempotent-replayed" not in theirs.headers
    assert await todo_count(conn, alice.user_id) == 1
    assert await todo_count(conn, bob.user_id) == 2
    row = await row_of(conn, theirs.json()["id"])
    assert row is not None
    assert str(row["owner"]) == bob.user_id


async def test_ten_concurrent_creates_with_one_idempotency_key_create_one_todo(
    alice: Device, conn: asyncpg.Connection
) -> None:
    payload, headers = {"title": "Only once"}, {"Idempotency-Key": "race-key"}

    responses = await asyncio.gather(
        *(call(alice, "POST", TODOS, json=payload, headers=headers) for _ in range(10))
    )

    assert [r.status_code for r in responses] == [201] * 10, [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert len({r.headers["location"] for r in responses}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 9
    assert await todo_count(conn) == 1


async def test_an_expired_idempotency_key_can_be_used_again(
    alice: Device, conn: asyncpg.Connection
) -> None:
    payload, headers = {"title": "Water plants"}, {"Idempotency-Key": "weekly"}
    first = await call(alice, "POST", TODOS, json=payload, headers=headers)
    assert first.status_code == 201
    await conn.execute(
        "UPDATE idempotency_key SET created_at = now() - interval '25 hours' WHERE key = $1",
        "weekly",
    )

    second = await call(alice, "POST", TODOS, json=payload, headers=headers)

    assert second.status_code == 201, second.text
    assert second.json()["id"] != first.json()["id"]
    assert "idempotent-replayed" not in second.headers
    assert await todo_count(conn) == 2
    third = await call(alice, "POST", TODOS, json=payload, headers=headers)
    assert third.headers["idempotent-replayed"] == "true"
    assert third.json() == second.json()
    assert await todo_count(conn) == 2


async def test_an_idempotency_key_under_a_day_old_still_replays(
    alice: Device, conn: asyncpg.Connection
) -> None:
    payload, headers = {"title": "Water plants"}, {"Idempotency-Key": "daily"}
    first = await call(alice, "POST", TODOS, json=payload, headers=headers)
    await conn.execute(
        "UPDATE idempotency_key SET created_at = now() - interval '23 hours' WHERE key = $1",
        "daily",
    )

    second = await call(alice, "POST", TODOS, json=payload, headers=headers)

    assert second.headers["idempotent-replayed"] == "true"
    assert second.json() == first.json()
    assert await todo_count(conn) == 1


async def test_replay_returns_the_first_response_even_after_the_todo_changed(
    alice: Device, conn: asyncpg.Connection
) -> None:
    payload, headers = {"title": "Original"}, {"Idempotency-Key": "k"}
    first = await call(alice, "POST", TODOS, json=payload, headers=headers)
    await call(alice, "PATCH", todo_url(first.json()["id"]), json={"title": "Edited"})

    replay = await call(alice, "POST", TODOS, json=payload, headers=headers)

    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["id"] == first.json()["id"]
    assert await todo_count(conn) == 1


async def test_invalid_idempotency_key_header_is_a_400_problem_and_stores_nothing(
    alice: Device, conn: asyncpg.Connection
) -> None:
    failures = []
    for case, key in {"empty": "", "256-chars": "k" * 256, "space": "a b", "tab": "a\tb"}.items():
        response = await call(
            alice, "POST", TODOS, json={"title": "t"}, headers={"Idempotency-Key": key}
        )
        failures.append(mismatch(case, response, 400))
    assert_all_pass(failures)
    assert await todo_count(conn) == 0
    assert await conn.fetchval("SELECT count(*) FROM idempotency_key") == 0


async def test_idempotency_key_of_255_visible_characters_is_accepted(
    alice: Device, conn: asyncpg.Connection
) -> None:
    key = "K-" + "x" * 250 + "!~{"
    assert len(key) == 255

    first = await call(alice, "POST", TODOS, json={"title": "t"}, headers={"Idempotency-Key": key})
    second = await call(alice, "POST", TODOS, json={"title": "t"}, headers={"Idempotency-Key": key})

    assert (first.status_code, second.status_code) == (201, 201)
    assert second.headers["idempotent-replayed"] == "true"
    assert await todo_count(conn) == 1
