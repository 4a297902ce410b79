"""What the schemathesis fuzzing (tests/test_fuzz.py) found, one plain test each.

Each test sends the request the fuzzer found (or its smallest form), checks that the app does
the right thing, and checks that /docs/openapi.json says so. Each was fixed and its test keeps
it fixed. A new finding gets its test here, marked xfail while it is open, and an entry in
`KNOWN` in tests/test_fuzz.py; both go when it is fixed.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import jsonschema_rs
import pytest

from tests.support.accounts import PASSWORD, Device, new_user, register, set_role, unique_email
from tests.support.todos import TODOS, create_todo

pytestmark = pytest.mark.anyio

SCHEMA_PATH = "/docs/openapi.json"
ME = "/api/v1/users/me"
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


async def published(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get(SCHEMA_PATH)
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def operation(document: dict[str, Any], operation_id: str) -> tuple[str, str, dict[str, Any]]:
    """(path, method, operation object) of the operation with this operationId."""
    for path, item in document["paths"].items():
        for method, op in item.items():
            if method in METHODS and op.get("operationId") == operation_id:
                return path, method, op
    raise AssertionError(f"no operation {operation_id} in the schema")


def component(document: dict[str, Any], name: str) -> dict[str, Any]:
    schema: dict[str, Any] = document["components"]["schemas"][name]
    return schema


def resolved(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    if ref := schema.get("$ref"):
        return component(document, ref.rsplit("/", 1)[-1])
    return schema


# Error responses are RFC 9457 problems, but the schema documented Litestar's default
# `{"status_code", "detail", "extra"}` as application/json (schemathesis: ST105 Undocumented
# Content-Type on every operation's 400).


async def test_error_responses_are_documented_as_problem_details(
    client: httpx.AsyncClient,
) -> None:
    device = await new_user(client)
    response = await client.post(TODOS, json={"title": ""}, headers=device.headers)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"

    document = await published(client)
    wrong = []
    for path, item in document["paths"].items():
        for method, op in item.items():
            for status, documented in op.get("responses", {}).items():
                if not status.startswith(("4", "5")):
                    continue
                content = documented.get("content", {})
                problem = content.get("application/problem+json", {}).get("schema", {})
                properties = resolved(document, problem).get("properties", {})
                if set(content) != {"application/problem+json"} or "status" not in properties:
                    wrong.append(f"{method.upper()} {path} {status}: {sorted(content)}")
    assert not wrong, "\n".join(wrong)


# Status codes the API answers (each one in the README's contract) that the schema did not
# list for the operation (schemathesis: ST103 Undocumented status code).

Provoke = Callable[[httpx.AsyncClient, Device, asyncpg.Connection], Awaitable[httpx.Response]]


async def wrong_login(client: httpx.AsyncClient, device: Device, _: Any) -> httpx.Response:
    return await client.post("/api/v1/auth/login", json={"login": device.email, "password": "x"})


async def wrong_token_form(client: httpx.AsyncClient, device: Device, _: Any) -> httpx.Response:
    form = {"username": device.email, "password": "wrong password", "grant_type": "password"}
    return await client.post("/api/v1/auth/token", data=form)


async def refresh_without_cookie(client: httpx.AsyncClient, *_: Any) -> httpx.Response:
    return await client.post("/api/v1/auth/refresh")


async def register_twice(client: httpx.AsyncClient, device: Device, _: Any) -> httpx.Response:
    body = {"email": device.email, "password": PASSWORD}
    return await client.post("/api/v1/auth/register", json=body)


async def email_change_without_password(
    client: httpx.AsyncClient, device: Device, _: Any
) -> httpx.Response:
    body = {"email": unique_email()}
    return await client.patch(ME, json=body, headers=device.headers)


async def taken_username(client: httpx.AsyncClient, device: Device, _: Any) -> httpx.Response:
    await register(client, username="taken_name")
    return await client.patch(ME, json={"username": "taken_name"}, headers=device.headers)


async def delete_me_wrong_password(
    client: httpx.AsyncClient, device: Device, _: Any
) -> httpx.Response:
    return await client.request("DELETE", ME, json={"password": "x"}, headers=device.headers)


async def change_password_wrong(
    client: httpx.AsyncClient, device: Device, _: Any
) -> httpx.Response:
    body = {"current_password": "wrong password", "new_password": "a brand new passphrase"}
    return await client.put(f"{ME}/password", json=body, headers=device.headers)


def absent(method: str, path: str, **kwargs: Any) -> Provoke:
    """A request naming a random, so absent, `{id}`."""

    async def send(client: httpx.AsyncClient, device: Device, _: Any) -> httpx.Response:
        url = path.format(id=uuid.uuid4())
        return await client.request(method, url, headers=device.headers, **kwargs)

    return send


def stale(method: str, action: str = "") -> Provoke:
    """A write on a real to-do with an If-Match naming an old version."""

    async def send(client: httpx.AsyncClient, device: Device, _: Any) -> httpx.Response:
        todo = await create_todo(device, "t")
        url = f"{TODOS}/{todo['id']}{action}"
        headers = {**device.headers, "If-Match": '"7"'}
        kwargs: dict[str, Any] = (
            {"json": {"title": "x"}} if method == "PATCH" and not action else {}
        )
        return await client.request(method, url, headers=headers, **kwargs)

    return send


async def admin_on_itself(
    client: httpx.AsyncClient, device: Device, conn: asyncpg.Connection
) -> httpx.Response:
    await set_role(conn, device.user_id, "admin")
    url = f"/api/v1/users/{device.user_id}"
    return await client.patch(url, json={"is_active": False}, headers=device.headers)


async def admin_on_nobody(
    client: httpx.AsyncClient, device: Device, conn: asyncpg.Connection
) -> httpx.Response:
    await set_role(conn, device.user_id, "admin")
    url = f"/api/v1/users/{uuid.uuid4()}"
    return await client.patch(url, json={"is_active": False}, headers=device.headers)


async def get_nobody(
    client: httpx.AsyncClient, device: Device, conn: asyncpg.Connection
) -> httpx.Response:
    await set_role(conn, device.user_id, "admin")
    return await client.get(f"/api/v1/users/{uuid.uuid4()}", headers=device.headers)


async def idempotency_key_reused(
    client: httpx.AsyncClient, device: Device, _: Any
) -> httpx.Response:
    headers = {**device.headers, "Idempotency-Key": "fuzz-key"}
    first = await client.post(TODOS, json={"title": "a"}, headers=headers)
    assert first.status_code == 201, first.text
    return await client.post(TODOS, json={"title": "b"}, headers=headers)


# operationId -> {status: a request that gets it}: the statuses the schema once left out.
UNDOCUMENTED: dict[str, dict[int, Provoke]] = {
    "Login": {401: wrong_login},
    "IssueToken": {401: wrong_token_form},
    "RefreshToken": {401: refresh_without_cookie},
    "Register": {409: register_twice},
    "UpdateMe": {401: email_change_without_password, 409: taken_username},
    "DeleteMe": {401: delete_me_wrong_password},
    "ChangePassword": {401: change_password_wrong},
    "RenameSession": {
        404: absent("PATCH", "/api/v1/auth/sessions/{id}", json={"device_name": "x"})
    },
    "RevokeSession": {404: absent("DELETE", "/api/v1/auth/sessions/{id}")},
    "GetUser": {404: get_nobody},
    "AdministerUser": {403: admin_on_itself, 404: admin_on_nobody},
    "CreateTodo": {422: idempotency_key_reused},
    "GetTodo": {404: absent("GET", f"{TODOS}/{{id}}")},
    "UpdateTodo": {
        404: absent("PATCH", f"{TODOS}/{{id}}", json={"title": "x"}),
        412: stale("PATCH"),
    },
    "DeleteTodo": {404: absent("DELETE", f"{TODOS}/{{id}}"), 412: stale("DELETE")},
    "CompleteTodo": {
        404: absent("PATCH", f"{TODOS}/{{id}}/complete"),
        412: stale("PATCH", "/complete"),
    },
    "ReopenTodo": {404: absent("PATCH", f"{TODOS}/{{id}}/reopen"), 412: stale("PATCH", "/reopen")},
    "RestoreTodo": {404: absent("POST", f"{TODOS}/{{id}}/restore")},
}


@pytest.mark.parametrize(
    ("operation_id", "status"),
    [(op, status) for op, statuses in UNDOCUMENTED.items() for status in statuses],
    ids=lambda value: str(value),
)
async def test_every_status_the_api_answers_is_documented(
    client: httpx.AsyncClient, conn: asyncpg.Connection, operation_id: str, status: int
) -> None:
    device = await new_user(client)
    response = await UNDOCUMENTED[operation_id][status](client, device, conn)
    assert response.status_code == status, response.text

    path, method, op = operation(await published(client), operation_id)
    assert str(status) in op["responses"], (
        f"{method.upper()} {path} answers {status} but documents only {sorted(op['responses'])}"
    )


# The public operations inherited the document's global `security` requirement, so the schema
# said they need a token. (Found reading the schema: schemathesis' ignored_auth check cannot
# probe this, since the oauth2 scheme names no header for it.)


async def test_public_operations_need_no_token_in_the_schema(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200

    document = await published(client)
    public = ["Health", "Ready", "Register", "Login", "IssueToken", "RefreshToken"]
    wrong = []
    for operation_id in public:
        path, method, op = operation(document, operation_id)
        requirements = op.get("security", document.get("security", []))
        if requirements and {} not in requirements:
            wrong.append(f"{method.upper()} {path}: security {requirements}")
    assert not wrong, "\n".join(wrong)


# Logout and logout-all answer 204 with no body, but the schema documented a JSON `null` body
# (schemathesis: ST104 Missing Content-Type header, ST109 JSON deserialization error).


@pytest.mark.parametrize("operation_id", ["Logout", "LogoutAll"])
async def test_logout_responses_are_documented_without_a_body(
    client: httpx.AsyncClient, operation_id: str
) -> None:
    device = await new_user(client)
    path, method, op = operation(await published(client), operation_id)
    response = await client.request(method, path, headers=device.headers)
    assert response.status_code == 204
    assert response.content == b""
    assert "content" not in op["responses"]["204"], op["responses"]["204"]


# OPTIONS on /api/v1/users and /api/v1/users/{id} was a 500: the admin guard read
# `connection.user`, which Litestar's auth middleware never sets for OPTIONS (it skips them),
# so the guard raised ImproperlyConfiguredException (schemathesis: ST101 Server error).


@pytest.mark.parametrize(
    "path", ["/api/v1/users", "/api/v1/users/00000000-0000-4000-8000-000000000000"]
)
async def test_options_on_the_admin_routes_is_not_a_server_error(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.options(path)
    assert response.status_code == 204, response.text
    assert "GET" in response.headers["allow"]


# OPTIONS answered `Allow` with the methods of only one of the handlers on a path (Litestar
# 2.x, litestar-org/litestar#4169: the OPTIONS handler is built for the route before the
# controller's other handlers on that path are merged into it), e.g. `Allow: OPTIONS, POST` on
# /api/v1/todos (schemathesis: ST205 Allow header mismatch).


async def test_options_lists_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    device = await new_user(client)
    document = await published(client)
    wrong = []
    for path, item in document["paths"].items():
        documented = {method.upper() for method in item if method in METHODS}
        url = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
        response = await client.options(url, headers=device.headers)
        allowed = {method.strip() for method in response.headers.get("allow", "").split(",")}
        if response.status_code != 204 or not documented <= allowed:
            wrong.append(f"OPTIONS {path}: {response.status_code}, Allow: {sorted(allowed)}")
    assert not wrong, "\n".join(wrong)


# Unknown fields in a JSON body are refused (the README's contract), but no request body
# schema said `additionalProperties: false`, so clients and tools took extra fields to be fine
# (schemathesis: ST202 Schema-valid request rejected, "Object contains unknown field").


async def test_request_body_schemas_say_unknown_fields_are_refused(
    client: httpx.AsyncClient,
) -> None:
    device = await new_user(client)
    body = {"title": "t", "colour": "red"}
    response = await client.post(TODOS, json=body, headers=device.headers)
    assert response.status_code == 400
    assert "unknown field" in response.text

    document = await published(client)
    open_bodies = []
    for path, item in document["paths"].items():
        for method, op in item.items():
            content = op.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                schema = resolved(document, content["application/json"]["schema"])
                if schema.get("additionalProperties") is not False:
                    open_bodies.append(f"{method.upper()} {path} ({schema.get('title')})")
    assert not open_bodies, "\n".join(open_bodies)


# Constraints the schema lost on the way from the msgspec Structs to OpenAPI, so it called
# valid what the app refuses (schemathesis: ST202 Schema-valid request rejected).


async def test_login_device_id_constraints_are_published(client: httpx.AsyncClient) -> None:
    """`device_id` was Annotated twice (the DeviceId alias, then a description); only the outer
    Meta reached the schema, so its 1..128 length and character pattern were lost."""
    user = await register(client)
    body = {"login": user["email"], "password": PASSWORD, "device_id": ""}
    response = await client.post("/api/v1/auth/login", json=body)
    assert response.status_code == 400
    assert "device_id" in response.text

    device_id = component(await published(client), "LoginRequest")["properties"]["device_id"]
    assert device_id.get("minLength") == 1, device_id
    assert device_id.get("maxLength") == 128, device_id
    assert "pattern" in device_id, device_id


async def test_todo_update_priority_minimum_is_published(client: httpx.AsyncClient) -> None:
    """TodoUpdate.priority is `Priority | UnsetType`; its `ge=0` did not reach the schema
    (its `le=3` did), while TodoCreate.priority kept both."""
    device = await new_user(client)
    todo = await create_todo(device, "t")
    url = f"{TODOS}/{todo['id']}"
    response = await client.patch(url, json={"priority": -1}, headers=device.headers)
    assert response.status_code == 400

    priority = component(await published(client), "TodoUpdate")["properties"]["priority"]
    assert priority.get("minimum") == 0, priority


async def test_if_match_format_is_published(client: httpx.AsyncClient) -> None:
    """If-Match takes one strong ETag or `*`; the schema said any string up to 200 characters."""
    device = await new_user(client)
    todo = await create_todo(device, "t")
    url = f"{TODOS}/{todo['id']}/complete"
    response = await client.patch(url, headers={**device.headers, "If-Match": "null"})
    assert response.status_code == 400

    _, _, op = operation(await published(client), "CompleteTodo")
    header = next(p for p in op["parameters"] if p["name"].lower() == "if-match")
    validator = jsonschema_rs.validator_for(header["schema"])
    assert validator.is_valid('"3"')
    assert validator.is_valid("*")
    assert not validator.is_valid("null"), header["schema"]


async def test_an_integral_number_is_an_integer(client: httpx.AsyncClient) -> None:
    """In JSON Schema (OpenAPI 3.1) `3.0` is an integer, and Python's `json.dumps(3.0)` sends
    it, but the strict body decoding refused it for `priority`: "Expected `int`, got `float`"."""
    device = await new_user(client)
    body = {"title": "t", "priority": 3.0}
    response = await client.post(TODOS, json=body, headers=device.headers)
    assert response.status_code == 201, response.text
    assert response.json()["priority"] == 3

    schema = component(await published(client), "TodoCreate")["properties"]["priority"]
    assert jsonschema_rs.validator_for(schema).is_valid(3.0), schema


@pytest.mark.parametrize(
    ("url", "component_name", "field", "value"),
    [
        ("/api/v1/auth/register", "RegisterRequest", "email", "a\x1eb@example.com"),
        ("/api/v1/auth/register", "RegisterRequest", "email", "a\x85b@example.com"),
        (TODOS, "TodoCreate", "title", "\x85\x85"),
    ],
    ids=["email-U+001E", "email-U+0085", "title-U+0085"],
)
async def test_patterns_mean_the_same_to_clients_and_to_the_server(
    client: httpx.AsyncClient, url: str, component_name: str, field: str, value: str
) -> None:
    """Patterns with `\\s` or `\\S` (email `^[^@\\s]+@...`, title `\\S`) are run by Python's
    `re` on the server and by ECMA-262 regexes in JSON Schema tools, whose `\\s` does not cover
    U+001C..U+001F or U+0085: the schema called valid what the server refuses. The patterns now
    spell the class out (todo_api/schemas.py SPACE), so they mean the same to both."""
    device = await new_user(client)
    body = {"email": value, "password": PASSWORD} if field == "email" else {field: value}
    response = await client.post(url, json=body, headers=device.headers)
    assert response.status_code == 400, response.text
    assert "matching regex" in response.text

    schema = component(await published(client), component_name)["properties"][field]
    # jsonschema_rs is the validator schemathesis (and so the fuzzing) judges requests with.
    assert not jsonschema_rs.validator_for(schema).is_valid(value), schema


# `due_before` / `due_after` are RFC 3339 date-times, but a number was taken for a Unix time
# (Litestar converts query values leniently): `?due_before=0.5` was a 200, not a 400
# (schemathesis: ST201 Schema-violating request accepted).


@pytest.mark.parametrize(("name", "value"), [("due_before", "0.5"), ("due_after", "1893456000")])
async def test_due_date_filters_refuse_a_number(
    client: httpx.AsyncClient, name: str, value: str
) -> None:
    device = await new_user(client)
    response = await client.get(TODOS, params={name: value}, headers=device.headers)
    assert response.status_code == 400, response.text
