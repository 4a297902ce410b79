"""/api/v1/todos listing (sorts, filters, keyset pagination), delta sync, trash and tombstone purge."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, get_args

import asyncpg
import httpx
import pytest

from tests.support.accounts import Device, login, new_user
from tests.support.cli import run_cli
from tests.support.problems import assert_problem
from tests.support.todos import TODOS, create_todo
from todo_api.todos.schemas import Sort

pytestmark = pytest.mark.anyio

CHANGES = f"{TODOS}/changes"
TRASH = f"{TODOS}/trash"
# Every sort the list takes, from its parameter's type.
SORTS: list[str] = list(get_args(Sort))
# A null due_at sorts as the far future: last for `due_at`, first for its reverse `-due_at`.
NO_DUE = datetime.max.replace(tzinfo=UTC)


# --- helpers --------------------------------------------------------------------------------


async def delete(device: Device, todo_id: str) -> None:
    response = await device.client.delete(f"{TODOS}/{todo_id}", headers=device.headers)
    assert response.status_code == 204, response.text


async def get_json(device: Device, path: str, **params: Any) -> Any:
    response = await device.client.get(path, params=params, headers=device.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def get(device: Device, path: str, **params: Any) -> httpx.Response:
    return await device.client.get(path, params=params, headers=device.headers)


async def walk(device: Device, path: str, limit: int, **params: Any) -> list[dict[str, Any]]:
    """Every item of a paginated list, following `next_cursor`; checks each page's envelope."""
    items: list[dict[str, Any]] = []
    query: dict[str, Any] = {**params, "limit": limit}
    for _ in range(200):
        body = await get_json(device, path, **query)
        assert set(body) == {"data", "meta"}
        assert set(body["meta"]) == {"count", "next_cursor"}
        assert body["meta"]["count"] == len(body["data"]) <= limit
        items += body["data"]
        cursor = body["meta"]["next_cursor"]
        if cursor is None:
            return items
        assert len(body["data"]) == limit
        query = {**params, "limit": limit, "cursor": cursor}
    raise AssertionError("pagination did not end")


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


async def sync(device: Device, **params: Any) -> dict[str, Any]:
    body: dict[str, Any] = await get_json(device, CHANGES, **params)
    assert set(body) == {"data", "meta", "sync_token"}
    assert body["meta"]["count"] == len(body["data"])
    return body


async def sync_all(
    device: Device, since: str | None = None, limit: int = 100
) -> tuple[list[dict[str, Any]], str]:
    """Every change since `since` over all pages, and the token the last page carries."""
    base: dict[str, Any] = {"limit": limit} if since is None else {"limit": limit, "since": since}
    query = dict(base)
    items: list[dict[str, Any]] = []
    for _ in range(200):
        body = await sync(device, **query)
        assert len(body["data"]) <= limit
        items += body["data"]
        cursor = body["meta"]["next_cursor"]
        if cursor is None:
            assert isinstance(body["sync_token"], str)
            assert body["sync_token"]
            return items, body["sync_token"]
        assert body["sync_token"] is None, "a token before the last page would skip the rest"
        assert len(body["data"]) == limit
        query = {**base, "cursor": cursor}
    raise AssertionError("sync pagination did not end")


def by_id(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    result = {item["id"]: item for item in items}
    assert len(result) == len(items), "an item appeared twice"
    return result


def sort_value(todo: dict[str, Any] | asyncpg.Record, field: str) -> Any:
    value = todo[field]
    if field in ("created_at", "due_at"):
        if value is None:
            return NO_DUE
        return datetime.fromisoformat(value) if isinstance(value, str) else value
    return value


def expected_order(todos: list[Any], sort: str) -> list[str]:
    """Ids in the order `sort` promises: the key, then the id, both reversed for '-'."""
    field = sort.lstrip("-")
    ordered = sorted(
        todos,
        key=lambda t: (sort_value(t, field), uuid.UUID(str(t["id"]))),
        reverse=sort.startswith("-"),
    )
    return [str(t["id"]) for t in ordered]


async def live_rows(conn: asyncpg.Connection, user_id: str) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT id, created_at, due_at, priority, position FROM todo "
        "WHERE owner = $1 AND deleted_at IS NULL",
        uuid.UUID(user_id),
    )
    return rows


def tamper(token: str) -> str:
    """The token with one character in its MAC changed."""
    i = 5
    return token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]


async def sorting_fixture(client: httpx.AsyncClient, conn: asyncpg.Connection) -> Device:
    """A user with to-dos that tie on every sort key, some without due dates, one deleted,
    beside another user's to-dos."""
    me = await new_user(client)
    other = await new_user(client)
    specs = [
        # priority, position, due_at
        (3, 1.5, "2030-01-02T00:00:00Z"),
        (1, -2.0, None),
        (3, 1.5, "2030-01-01T00:00:00Z"),
        (0, 10.0, "2030-01-02T00:00:00Z"),
        (2, 0.0, None),
        (3, 0.25, "2030-01-01T23:00:00-05:00"),
        (1, 1.5, None),
        (0, 0.0, "2029-12-31T12:00:00+09:00"),
        (2, -2.0, "2030-01-02T00:00:00Z"),
        (3, 3.0, None),
    ]
    created = [
        await create_todo(me, f"todo {n}", priority=p, position=pos, due_at=due)
        for n, (p, pos, due) in enumerate(specs)
    ]
    # Two pairs with one created_at each: ties on the default sort too.
    for a, b in ((1, 4), (6, 7)):
        await conn.execute(
            "UPDATE todo SET created_at = (SELECT created_at FROM todo WHERE id = $1) "
            "WHERE id = $2",
            uuid.UUID(created[a]["id"]),
            uuid.UUID(created[b]["id"]),
        )
    gone = await create_todo(me, "deleted", priority=3, position=0.0)
    await delete(me, gone["id"])
    for n in range(3):
        await create_todo(other, f"someone else's {n}", priority=n, position=1.5)
    return me


# --- listing --------------------------------------------------------------------------------


async def test_list_is_an_envelope_sorted_oldest_first_by_default(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    me = await sorting_fixture(client, conn)

    body = await get_json(me, TODOS)

    assert set(body) == {"data", "meta"}
    assert body["meta"] == {"count": 10, "next_cursor": None}
    assert ids(body["data"]) == expected_order(await live_rows(conn, me.user_id), "created_at")
    assert all(set(item) >= {"id", "title", "version", "created_at"} for item in body["data"])
    assert "deleted" not in {item["title"] for item in body["data"]}


async def test_default_page_size_is_twenty(client: httpx.AsyncClient) -> None:
    me = await new_user(client)
    for n in range(21):
        await create_todo(me, f"t{n}")

    body = await get_json(me, TODOS)

    assert body["meta"]["count"] == 20
    assert isinstance(body["meta"]["next_cursor"], str)


@pytest.mark.parametrize("sort", SORTS)
async def test_each_sort_walked_in_pages_returns_every_todo_once_in_order(
    client: httpx.AsyncClient, conn: asyncpg.Connection, sort: str
) -> None:
    me = await sorting_fixture(client, conn)
    expected = expected_order(await live_rows(conn, me.user_id), sort)

    whole = await get_json(me, TODOS, sort=sort, limit=100)
    paged = await walk(me, TODOS, 3, sort=sort)

    assert ids(whole["data"]) == expected
    assert ids(paged) == expected


async def test_due_at_sort_puts_todos_without_a_due_date_last(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    me = await sorting_fixture(client, conn)

    ascending = await walk(me, TODOS, 3, sort="due_at")
    descending = await walk(me, TODOS, 3, sort="-due_at")

    dues = [item["due_at"] for item in ascending]
    assert dues[-4:] == [None] * 4
    assert None not in dues[:-4]
    assert ids(descending) == ids(ascending)[::-1]


async def test_deleted_and_other_users_todos_never_appear(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    me = await new_user(client)
    other = await new_user(client)
    mine = [await create_todo(me, f"mine {n}", priority=2) for n in range(4)]
    theirs = [await create_todo(other, f"theirs {n}", priority=2) for n in range(4)]
    await delete(me, mine[1]["id"])

    for sort in SORTS:
        listed = ids(await walk(me, TODOS, 2, sort=sort))
        assert sorted(listed) == sorted(ids([mine[0], mine[2], mine[3]])), sort
    assert ids(await walk(me, TODOS, 100, q="theirs")) == []
    assert sorted(ids(await walk(other, TODOS, 3))) == sorted(ids(theirs))
    deleted_at = await conn.fetchval(
        "SELECT deleted_at FROM todo WHERE id = $1", uuid.UUID(mine[1]["id"])
    )
    assert deleted_at is not None


async def test_completed_filter_returns_only_done_or_only_open_todos(
    client: httpx.AsyncClient,
) -> None:
    me = await new_user(client)
    todos = [await create_todo(me, f"t{n}") for n in range(6)]
    for todo in todos[::2]:
        response = await me.client.patch(f"{TODOS}/{todo['id']}/complete", headers=me.headers)
        assert response.status_code == 200, response.text

    done = await walk(me, TODOS, 2, completed="true")
    open_ = await walk(me, TODOS, 2, completed="false")
    everything = await walk(me, TODOS, 2)

    assert ids(done) == ids(todos[::2])
    assert all(item["is_completed"] for item in done)
    assert ids(open_) == ids(todos[1::2])
    assert not any(item["is_completed"] for item in open_)
    assert ids(everything) == ids(todos)


async def test_search_is_case_insensitive_over_title_and_notes_with_literal_wildcards(
    client: httpx.AsyncClient,
) -> None:
    me = await new_user(client)
    other = await new_user(client)
    milk_title = await create_todo(me, "Buy MILK")
    milk_notes = await create_todo(me, "groceries", notes="oat Milk, bread")
    percent = await create_todo(me, "100% done")
    underscore = await create_todo(me, "rename snake_case vars")
    plain = await create_todo(me, "nothing special", notes="snakeXcase 100 percent")
    await create_todo(other, "milk for someone else")

    assert ids(await walk(me, TODOS, 1, q="milk")) == ids([milk_title, milk_notes])
    assert ids(await walk(me, TODOS, 10, q="MiLk")) == ids([milk_title, milk_notes])
    assert ids(await walk(me, TODOS, 10, q="%")) == ids([percent])
    assert ids(await walk(me, TODOS, 10, q="100%")) == ids([percent])
    assert ids(await walk(me, TODOS, 10, q="_")) == ids([underscore])
    assert ids(await walk(me, TODOS, 10, q="snake_case")) == ids([underscore])
    assert ids(await walk(me, TODOS, 10, q="\\")) == []
    assert ids(await walk(me, TODOS, 10, q="special")) == ids([plain])
    assert ids(await walk(me, TODOS, 10, q="absent")) == []


async def test_due_before_and_due_after_compare_instants_across_time_zones(
    client: httpx.AsyncClient,
) -> None:
    me = await new_user(client)
    eight_utc = await create_todo(me, "a", due_at="2030-01-01T08:00:00Z")
    eight_utc_in_berlin = await create_todo(me, "b", due_at="2030-01-01T09:00:00+01:00")
    noon_utc = await create_todo(me, "c", due_at="2030-01-01T07:00:00-05:00")
    await create_todo(me, "no due date")

    assert eight_utc_in_berlin["due_at"] == "2030-01-01T08:00:00Z"
    assert noon_utc["due_at"] == "2030-01-01T12:00:00Z"

    async def listed(**params: str) -> list[str]:
        return ids(await walk(me, TODOS, 2, **params))

    both_eights = ids([eight_utc, eight_utc_in_berlin])
    # 09:30+01:00 is 08:30Z; both bounds are exclusive, and a missing due date never matches.
    assert await listed(due_before="2030-01-01T09:30:00+01:00") == both_eights
    assert await listed(due_before="2030-01-01T09:00:00+01:00") == []
    assert await listed(due_after="2030-01-01T09:30:00+01:00") == ids([noon_utc])
    assert await listed(due_after="2030-01-01T03:00:00-05:00") == ids([noon_utc])
    assert await listed(due_after="2030-01-01T02:59:59-05:00") == [*both_eights, noon_utc["id"]]
    assert await listed(due_after="2030-01-01T07:00:00-05:00") == []
    assert (
        await listed(due_after="2030-01-01T07:00:00Z", due_before="2030-01-01T11:59:59.999Z")
        == both_eights
    )


async def test_filters_combine(client: httpx.AsyncClient) -> None:
    me = await new_user(client)
    match_a = await create_todo(me, "Report draft", due_at="2030-03-01T00:00:00Z", priority=1)
    match_b = await create_todo(
        me, "x", notes="the REPORT", due_at="2030-03-02T00:00:00Z", priority=3
    )
    done = await create_todo(me, "report sent", due_at="2030-03-01T12:00:00Z", priority=2)
    await me.client.patch(f"{TODOS}/{done['id']}/complete", headers=me.headers)
    await create_todo(me, "report later", due_at="2031-01-01T00:00:00Z")
    await create_todo(me, "report no date")
    await create_todo(me, "unrelated", due_at="2030-03-01T00:00:00Z")

    params = {
        "completed": "false",
        "q": "report",
        "due_after": "2030-02-01T00:00:00+00:00",
        "due_before": "2030-04-01T00:00:00+00:00",
    }
    assert ids(await walk(me, TODOS, 1, **params)) == ids([match_a, match_b])
    assert ids(await walk(me, TODOS, 1, **params, sort="-priority")) == ids([match_b, match_a])
    assert ids(await walk(me, TODOS, 1, **{**params, "completed": "true"})) == ids([done])


# --- bad list parameters --------------------------------------------------------------------

BAD_LIST_PARAMS: list[dict[str, str]] = [
    {"limit": "0"},
    {"limit": "101"},
    {"limit": "-1"},
    {"limit": "abc"},
    {"limit": "1.5"},
    {"sort": "title"},
    {"sort": "-"},
    {"sort": "created_at; DROP TABLE todo"},
    {"completed": "maybe"},
    {"due_before": "not-a-date"},
    {"due_after": "2030-13-40T00:00:00Z"},
    {"due_before": "2030-01-01T00:00:00"},
    {"due_after": "2030-01-01T00:00:00"},
    {"q": "a\x00b"},
    {"q": "x" * 101},
    {"cursor": "not a cursor!!"},
    {"cursor": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
    {"cursor": "é" * 10},
    {"cursor": "A" * 513},
]


async def test_bad_list_parameters_are_400_problems(client: httpx.AsyncClient) -> None:
    me = await new_user(client)
    await create_todo(me)

    for params in BAD_LIST_PARAMS:
        response = await get(me, TODOS, **params)
        assert response.status_code == 400, (params, response.status_code, response.text)
        assert_problem(response, 400)


@pytest.mark.parametrize(
    "params",
    [
        {"due_before": "0001-01-01T00:00:00+14:00"},
        {"due_after": "9999-12-31T23:59:59-14:00"},
    ],
)
async def test_due_bounds_outside_the_representable_range_are_never_a_server_error(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    me = await new_user(client)
    await create_todo(me, due_at="2030-01-01T00:00:00Z")

    response = await get(me, TODOS, **params)

    # Valid RFC 3339 that falls outside PostgreSQL's range once in UTC: empty or 400, not 500.
    assert response.status_code in (200, 400), (response.status_code, response.text)
    if response.status_code == 200:
        assert response.json()["data"] == []
    else:
        assert_problem(response, 400)


async def test_cursors_that_are_altered_or_from_another_list_are_400_problems(
    client: httpx.AsyncClient,
) -> None:
    me = await new_user(client)
    other = await new_user(client)
    for n in range(4):
        await create_todo(me, f"report {n}", priority=n % 2, due_at="2030-01-01T00:00:00Z")
        await create_todo(other, f"report {n}")

    async def cursor_of(device: Device, path: str = TODOS, **params: Any) -> str:
        body = await get_json(device, path, limit=1, **params)
        cursor: str = body["meta"]["next_cursor"]
        assert cursor
        return cursor

    plain = await cursor_of(me)
    # The untouched cursor works, so the failures below are about the cursor alone.
    assert (await get(me, TODOS, limit=1, cursor=plain)).status_code == 200

    cases: list[tuple[dict[str, Any], Device]] = [
        ({"cursor": tamper(plain)}, me),
        ({"cursor": plain[:-3]}, me),
        ({"cursor": plain + "AAAA"}, me),
        ({"cursor": await cursor_of(other)}, me),
        ({"cursor": plain}, other),
        ({"cursor": await cursor_of(me, sort="priority")}, me),
        ({"cursor": plain, "sort": "-created_at"}, me),
        ({"cursor": await cursor_of(me, completed="false"), "completed": "true"}, me),
        ({"cursor": await cursor_of(me, q="report"), "q": "repor"}, me),
        ({"cursor": await cursor_of(me, q="report")}, me),
        (
            {
                "cursor": await cursor_of(me, due_before="2031-01-01T00:00:00Z"),
                "due_before": "2032-01-01T00:00:00Z",
            },
            me,
        ),
        ({"cursor": await cursor_of(me, due_after="2020-01-01T00:00:00Z")}, me),
        ({"cursor": (await sync(me, limit=1))["meta"]["next_cursor"]}, me),
    ]
    for params, device in cases:
        response = await get(device, TODOS, limit=1, **params)
        assert response.status_code == 400, (params, response.status_code, response.text)
        assert_problem(response, 400)


# --- pagination under concurrent writes -----------------------------------------------------


@pytest.mark.parametrize("sort", ["created_at", "-created_at", "priority", "-due_at", "position"])
async def test_paging_while_another_device_inserts_and_deletes_never_repeats_or_skips(
    client: httpx.AsyncClient, sort: str
) -> None:
    me = await new_user(client)
    phone = await login(client, me.email)
    originals = [
        await create_todo(
            me,
            f"original {n}",
            priority=n % 4,
            position=float(n % 5),
            due_at=None if n % 3 == 0 else f"2030-01-{1 + n % 7:02d}T00:00:00Z",
        )
        for n in range(30)
    ]
    order = expected_order(originals, sort)
    original_ids = set(order)
    deleted: set[str] = set()
    deleted_before_reached: set[str] = set()
    extras: list[str] = []

    seen: list[str] = []
    query: dict[str, Any] = {"sort": sort, "limit": 5}
    for page_number in range(100):
        body = await get_json(me, TODOS, **query)
        seen += ids(body["data"])
        cursor = body["meta"]["next_cursor"]
        if cursor is None:
            break
        query = {"sort": sort, "limit": 5, "cursor": cursor}
        if page_number >= 8:
            continue
        # Between pages the phone writes: new to-dos landing before and after the cursor...
        for k in range(2):
            extra = await create_todo(
                phone,
                f"extra {page_number}.{k}",
                priority=(page_number + k) % 4,
                position=float((page_number * 3 + k) % 5) - 0.5 * k,
                due_at=None if k else f"2030-01-{1 + page_number % 7:02d}T00:00:00Z",
            )
            extras.append(extra["id"])
        # ...deletes one it made earlier, and an original not reached yet or, every third
        # page, the row the cursor points at.
        await delete(phone, extras.pop(0))
        anchor = seen[-1]
        unseen = [i for i in order if i not in seen and i not in deleted]
        if page_number % 3 == 2 and anchor in original_ids and anchor not in deleted:
            await delete(phone, anchor)
            deleted.add(anchor)
        elif unseen:
            victim = unseen[(page_number * 7) % len(unseen)]
            await delete(phone, victim)
            deleted.add(victim)
            deleted_before_reached.add(victim)
    else:
        raise AssertionError("the walk did not end")

    assert len(seen) == len(set(seen)), "an item was returned twice"
    survivors = [i for i in order if i not in deleted]
    assert [i for i in seen if i in original_ids and i not in deleted] == survivors
    assert not deleted_before_reached & set(seen), "a to-do deleted before its page was listed"
    assert len(deleted_before_reached) >= 3


# --- delta sync -----------------------------------------------------------------------------


async def test_sync_without_since_is_a_snapshot_of_live_todos_with_a_token(
    client: httpx.AsyncClient,
) -> None:
    me = await new_user(client)
    other = await new_user(client)
    todos = [await create_todo(me, f"t{n}") for n in range(4)]
    await delete(me, todos[2]["id"])
    await create_todo(other, "not mine")

    body = await sync(me)

    live = [todos[0], todos[1], todos[3]]
    assert sorted(ids(body["data"])) == sorted(ids(live))
    assert body["meta"] == {"count": 3, "next_cursor": None}
    assert isinstance(body["sync_token"], str)
    assert body["sync_token"]
    for item in body["data"]:
        assert item["deleted"] is False
        assert item["deleted_at"] is None
        original = next(t for t in live if t["id"] == item["id"])
        assert {k: item[k] for k in original} == original


async def test_sync_pages_return_each_change_once_and_the_token_only_on_the_last_page(
    client: httpx.AsyncClient,
) -> None:
    me = await new_user(client)
    todos = [await create_todo(me, f"t{n}") for n in range(7)]

    first_page = await sync(me, limit=3)
    assert first_page["meta"]["count"] == 3
    assert first_page["meta"]["next_cursor"]
    assert first_page["sync_token"] is None

    snapshot, token = await sync_all(me, limit=3)
    assert sorted(ids(snapshot)) == sorted(ids(todos))
    by_id(snapshot)

    for todo in todos[:5]:
        response = await me.client.patch(
            f"{TODOS}/{todo['id']}", json={"title": "renamed"}, headers=me.headers
        )
        assert response.status_code == 200, response.text
    changed, next_token = await sync_all(me, since=token, limit=2)
    assert sorted(ids(changed)) == sorted(ids(todos[:5]))
    assert all(item["title"] == "renamed" for item in by_id(changed).values())

    nothing, _ = await sync_all(me, since=next_token, limit=2)
    assert nothing == []


async def test_sync_since_a_token_returns_exactly_what_another_device_changed(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    laptop = await new_user(client)
    phone = await login(client, laptop.email)
    other = await new_user(client)
    todos = [await create_todo(laptop, f"t{n}") for n in range(5)]
    theirs = await create_todo(other, "theirs")
    _, token = await sync_all(laptop)

    added = await create_todo(phone, "added on the phone")
    response = await phone.client.patch(
        f"{TODOS}/{todos[0]['id']}", json={"title": "edited on the phone"}, headers=phone.headers
    )
    assert response.status_code == 200, response.text
    response = await phone.client.patch(f"{TODOS}/{todos[1]['id']}/complete", headers=phone.headers)
    assert response.status_code == 200, response.text
    await delete(phone, todos[2]["id"])
    await create_todo(other, "theirs too")
    await delete(other, theirs["id"])

    changes, new_token = await sync_all(laptop, since=token)
    changed = by_id(changes)

    assert set(changed) == {added["id"], todos[0]["id"], todos[1]["id"], todos[2]["id"]}
    assert changed[added["id"]]["deleted"] is False
    assert changed[added["id"]]["title"] == "added on the phone"
    assert changed[todos[0]["id"]]["title"] == "edited on the phone"
    assert changed[todos[0]["id"]]["version"] == 2
    assert changed[todos[1]["id"]]["is_completed"] is True
    assert changed[todos[1]["id"]]["completed_at"] is not None
    tombstone = changed[todos[2]["id"]]
    assert tombstone["deleted"] is True
    stored = await conn.fetchval(
        "SELECT deleted_at FROM todo WHERE id = $1", uuid.UUID(todos[2]["id"])
    )
    assert stored is not None
    assert datetime.fromisoformat(tombstone["deleted_at"]) == stored
    assert all(
        not item["deleted"] and item["deleted_at"] is None
        for key, item in changed.items()
        if key != todos[2]["id"]
    )
    assert new_token != token

    again = await sync(laptop, since=new_token)
    assert again["data"] == []
    assert again["meta"] == {"count": 0, "next_cursor": None}
    assert again["sync_token"]


async def test_a_restored_todo_reappears_in_the_next_sync_as_not_deleted(
    client: httpx.AsyncClient,
) -> None:
    laptop = await new_user(client)
    phone = await login(client, laptop.email)
    todo = await create_todo(laptop, "comes back")
    await delete(laptop, todo["id"])
    snapshot, token = await sync_all(laptop)
    assert snapshot == []

    response = await phone.client.post(f"{TODOS}/{todo['id']}/restore", headers=phone.headers)
    assert response.status_code == 200, response.text

    changes, _ = await sync_all(laptop, since=token)
    assert ids(changes) == [todo["id"]]
    assert changes[0]["deleted"] is False
    assert changes[0]["deleted_at"] is None
    assert ids(await walk(laptop, TODOS, 10)) == [todo["id"]]


async def test_a_deletion_after_a_token_is_synced_as_a_tombstone(
    client: httpx.AsyncClient,
) -> None:
    laptop = await new_user(client)
    phone = await login(client, laptop.email)
    todo = await create_todo(laptop, "goes away")
    _, token = await sync_all(phone)

    await delete(laptop, todo["id"])

    changes, _ = await sync_all(phone, since=token)
    assert ids(changes) == [todo["id"]]
    assert changes[0]["deleted"] is True
    assert changes[0]["deleted_at"] is not None
    snapshot, _ = await sync_all(phone)
    assert snapshot == []


async def test_another_users_changes_never_appear_in_my_sync(client: httpx.AsyncClient) -> None:
    me = await new_user(client)
    other = await new_user(client)
    mine = await create_todo(me, "mine")
    _, token = await sync_all(me)

    theirs = [await create_todo(other, f"theirs {n}") for n in range(3)]
    await other.client.patch(f"{TODOS}/{theirs[0]['id']}/complete", headers=other.headers)
    await delete(other, theirs[1]["id"])

    changes, _ = await sync_all(me, since=token)
    assert changes == []
    snapshot, _ = await sync_all(me, limit=1)
    assert ids(snapshot) == [mine["id"]]


async def test_bad_sync_tokens_and_cursors_are_400_problems(client: httpx.AsyncClient) -> None:
    me = await new_user(client)
    other = await new_user(client)
    for n in range(3):
        await create_todo(me, f"t{n}")
        await create_todo(other, f"t{n}")
    _, token = await sync_all(me)
    _, their_token = await sync_all(other)
    their_cursor = (await sync(other, limit=1))["meta"]["next_cursor"]
    list_cursor = (await get_json(me, TODOS, limit=1))["meta"]["next_cursor"]
    # The untouched token works, so the failures below are about the token alone.
    assert (await get(me, CHANGES, since=token)).status_code == 200

    cases: list[dict[str, Any]] = [
        {"since": tamper(token)},
        {"since": token + "A"},
        {"since": "garbage!"},
        {"since": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
        {"since": "A" * 513},
        {"since": their_token},
        {"since": list_cursor},
        {"cursor": their_cursor},
        {"cursor": token},
        {"cursor": list_cursor},
        {"cursor": "A" * 513},
        {"limit": "0"},
        {"limit": "501"},
        {"limit": "many"},
    ]
    for params in cases:
        response = await get(me, CHANGES, **params)
        assert response.status_code == 400, (params, response.status_code, response.text)
        assert_problem(response, 400)


# --- a change committed while a sync runs ---------------------------------------------------


async def test_an_insert_committed_during_a_sync_is_in_the_next_sync(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    me = await new_user(client)
    first = await create_todo(me, "before")
    _, token = await sync_all(me)
    before_commit = uuid.uuid4()

    transaction = conn.transaction()
    await transaction.start()
    try:
        await conn.execute(
            "INSERT INTO todo (id, owner, title, notes, is_completed, priority, position, "
            "created_at, updated_at, version) "
            "VALUES ($1, $2, 'written by a slow transaction', '', false, 0, 0, now(), now(), 1)",
            before_commit,
            uuid.UUID(me.user_id),
        )
        during = await create_todo(me, "during")
        changes, racing_token = await sync_all(me, since=token)
        assert str(before_commit) not in ids(changes)
        assert ids(changes) == [during["id"]]
    except BaseException:
        await transaction.rollback()
        raise
    await transaction.commit()

    changes, _ = await sync_all(me, since=racing_token)
    assert str(before_commit) in ids(changes)
    assert by_id(changes)[str(before_commit)]["title"] == "written by a slow transaction"
    snapshot, _ = await sync_all(me)
    assert sorted(ids(snapshot)) == sorted([first["id"], during["id"], str(before_commit)])


async def test_an_update_committed_during_a_sync_is_in_the_next_sync(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    me = await new_user(client)
    todo = await create_todo(me, "original title")
    _, token = await sync_all(me)

    transaction = conn.transaction()
    await transaction.start()
    try:
        await conn.execute(
            "UPDATE todo SET title = 'changed slowly', version = version + 1 WHERE id = $1",
            uuid.UUID(todo["id"]),
        )
        changes, racing_token = await sync_all(me, since=token)
        assert changes == []
        snapshot, _ = await sync_all(me)
        assert [item["title"] for item in snapshot] == ["original title"]
    except BaseException:
        await transaction.rollback()
        raise
    await transaction.commit()

    changes, _ = await sync_all(me, since=racing_token)
    assert ids(changes) == [todo["id"]]
    assert changes[0]["title"] == "changed slowly"
    assert changes[0]["version"] == 2


# --- trash and tombstone purge --------------------------------------------------------------


async def test_trash_lists_deleted_todos_newest_first_with_pagination(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    me = await new_user(client)
    other = await new_user(client)
    todos = [await create_todo(me, f"t{n}") for n in range(7)]
    for todo in todos[:6]:
        await delete(me, todo["id"])
    # Two deletions at one instant: the id breaks the tie.
    await conn.execute(
        "UPDATE todo SET deleted_at = (SELECT deleted_at FROM todo WHERE id = $1) WHERE id = $2",
        uuid.UUID(todos[2]["id"]),
        uuid.UUID(todos[3]["id"]),
    )
    theirs = await create_todo(other, "theirs")
    await delete(other, theirs["id"])
    rows = await conn.fetch(
        "SELECT id FROM todo WHERE owner = $1 AND deleted_at IS NOT NULL "
        "ORDER BY deleted_at DESC, id DESC",
        uuid.UUID(me.user_id),
    )
    expected = [str(row["id"]) for row in rows]

    first = await get_json(me, TRASH)
    paged = await walk(me, TRASH, 2)

    assert ids(first["data"]) == expected
    assert first["meta"] == {"count": 6, "next_cursor": None}
    assert ids(paged) == expected
    assert ids(paged)[0] == todos[5]["id"]
    assert all(item["deleted_at"] for item in paged)
    assert todos[6]["id"] not in ids(paged)

    response = await me.client.post(f"{TODOS}/{todos[5]['id']}/restore", headers=me.headers)
    assert response.status_code == 200, response.text
    assert ids(await walk(me, TRASH, 2)) == expected[1:]

    trash_cursor = (await get_json(me, TRASH, limit=1))["meta"]["next_cursor"]
    list_cursor = (await get_json(me, TODOS, limit=1))["meta"]["next_cursor"]
    for device, cursor in ((me, tamper(trash_cursor)), (other, trash_cursor), (me, list_cursor)):
        response = await get(device, TRASH, cursor=cursor)
        assert_problem(response, 400)
    assert_problem(await get(me, TODOS, cursor=trash_cursor), 400)


async def test_purged_tombstones_leave_the_trash_and_make_older_sync_tokens_gone(
    client: httpx.AsyncClient, conn: asyncpg.Connection, database_url: str
) -> None:
    me = await new_user(client)
    old, recent, live = [await create_todo(me, title) for title in ("old", "recent", "live")]
    _, token_before = await sync_all(me)
    await delete(me, old["id"])
    await delete(me, recent["id"])
    await conn.execute(
        "UPDATE todo SET deleted_at = now() - interval '40 days' WHERE id = $1",
        uuid.UUID(old["id"]),
    )

    result = run_cli(database_url, "cleanup")

    assert result.returncode == 0, result.stderr
    remaining = await conn.fetch(
        "SELECT id FROM todo WHERE owner = $1 ORDER BY title", uuid.UUID(me.user_id)
    )
    assert {str(row["id"]) for row in remaining} == {recent["id"], live["id"]}
    assert ids(await walk(me, TRASH, 1)) == [recent["id"]]

    gone = await get(me, CHANGES, since=token_before)
    problem = assert_problem(gone, 410)
    assert "since" in str(problem["detail"])

    snapshot, token_after = await sync_all(me)
    assert ids(snapshot) == [live["id"]]
    assert (await sync(me, since=token_after))["data"] == []
    added = await create_todo(me, "after the purge")
    changes, _ = await sync_all(me, since=token_after)
    assert ids(changes) == [added["id"]]
