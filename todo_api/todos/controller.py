"""/api/v1/todos: CRUD, completion, listing, trash, delta sync; ETag/If-Match and Idempotency-Key."""

from __future__ import annotations

import re
from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, HttpMethod, Request, Response, delete, get, patch, post, route
from litestar.di import NamedDependency, Provide
from litestar.openapi.spec import Example
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter

from todo_api.context import AppContext
from todo_api.core.errors import BadRequest, problem_response
from todo_api.core.identity import CurrentUser
from todo_api.core.pagination import DEFAULT_LIMIT
from todo_api.core.schemas import END, Page
from todo_api.todos.schemas import (
    ChangesPage,
    DeletedTodo,
    Sort,
    Todo,
    TodoCreate,
    TodoFilter,
    TodoUpdate,
)
from todo_api.todos.service import TodoService, etag
from todo_api.web.params import Cursor, DueBound, Limit, SearchText, moment

PATH = "/api/v1/todos"
# One strong ETag as we send them, or `*` (a list of ETags is not supported).
IF_MATCH_PATTERN = rf'^[ \t]*(\*|"[0-9]{{1,9}}")[ \t]*{END}'
_STRONG_ETAG = re.compile(r'"([0-9]{1,9})"')

IfMatch = Annotated[
    str | None,
    HeaderParameter(
        name="If-Match",
        pattern=IF_MATCH_PATTERN,
        description='Apply only if the to-do still has this ETag (e.g. "3"), or `*`; else 412',
        examples=[Example(value='"3"'), Example(value="*")],
    ),
]
IdempotencyKeyHeader = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Retries with the same key and body return the first response (24 h)",
    ),
]
SyncToken = Annotated[
    str | None, QueryParameter(max_length=512, description="`sync_token` of your last sync")
]


def provide_todo_service(request: Request[CurrentUser, Any, Any]) -> TodoService:
    """Per request: the caller's to-dos."""
    return TodoService(request.user.id, AppContext.of(request).cursors)


PROVIDERS = {"todos": Provide(provide_todo_service, sync_to_thread=False)}


def update_operation_id(_: object, method: str, __: object) -> str:
    """PATCH and PUT share the update handler; generated clients still need one id each."""
    return "PutTodo" if method == HttpMethod.PUT else "UpdateTodo"


def expected_version(if_match: str | None) -> int | None:
    """The version an If-Match names; None for no condition (absent or `*`)."""
    if if_match is None or if_match.strip() == "*":
        return None
    match = _STRONG_ETAG.fullmatch(if_match.strip())
    if match is None:  # Litestar refuses these with IF_MATCH_PATTERN before the handler runs
        raise BadRequest('If-Match must be one strong ETag as sent in ETag, e.g. "3", or *.')
    return int(match.group(1))


def with_etag(todo: Todo, status_code: int = 200) -> Response[Todo]:
    return Response(todo, status_code=status_code, headers={"ETag": etag(todo.version)})


class TodoController(Controller):
    path = PATH
    tags = ["todos"]

    @post("/", operation_id="CreateTodo", status_code=201)
    async def create(
        self,
        data: JSONBody[TodoCreate],
        todos: NamedDependency[TodoService],
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[Todo]:
        todo, replayed = await todos.create(data, idempotency_key)
        response = with_etag(todo, status_code=201)
        response.headers["Location"] = f"{PATH}/{todo.id}"
        if replayed:
            response.headers["Idempotent-Replayed"] = "true"
        return response

    @get("/", operation_id="ListTodos")
    async def list_todos(
        self,
        todos: NamedDependency[TodoService],
        completed: Annotated[
            bool | None, QueryParameter(description="Only done / not done")
        ] = None,
        q: SearchText = None,
        due_before: DueBound = None,
        due_after: DueBound = None,
        sort: Annotated[Sort, QueryParameter(description="A field; '-' for descending")] = (
            "created_at"
        ),
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> Page[Todo]:
        filters = TodoFilter(
            completed=completed,
            q=q,
            due_before=moment(due_before, "due_before"),
            due_after=moment(due_after, "due_after"),
            sort=sort,
        )
        return await todos.list(filters, limit, cursor)

    @get(
        "/changes",
        operation_id="SyncTodos",
        summary="Delta sync since a sync token",
        responses={410: problem_response("The sync token is too old: sync again without `since`")},
    )
    async def changes(
        self,
        todos: NamedDependency[TodoService],
        since: SyncToken = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
        cursor: Cursor = None,
    ) -> ChangesPage:
        return await todos.changes(since, limit, cursor)

    @get("/trash", operation_id="ListTrash")
    async def trash(
        self,
        todos: NamedDependency[TodoService],
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> Page[DeletedTodo]:
        return await todos.trash(limit, cursor)

    @get("/{todo_id:uuid}", operation_id="GetTodo")
    async def get_todo(
        self, todo_id: FromPath[UUID], todos: NamedDependency[TodoService]
    ) -> Response[Todo]:
        return with_etag(await todos.get(todo_id))

    @route(
        "/{todo_id:uuid}",
        http_method=[HttpMethod.PATCH, HttpMethod.PUT],
        operation_id=update_operation_id,
        summary="Update a to-do: the fields present (PUT is the same, for clients of FastAPI "
        "to-do backends)",
    )
    async def update(
        self,
        todo_id: FromPath[UUID],
        data: JSONBody[TodoUpdate],
        todos: NamedDependency[TodoService],
        if_match: IfMatch = None,
    ) -> Response[Todo]:
        return with_etag(await todos.update(todo_id, data, expected_version(if_match)))

    @delete("/{todo_id:uuid}", operation_id="DeleteTodo")
    async def delete_todo(
        self,
        todo_id: FromPath[UUID],
        todos: NamedDependency[TodoService],
        if_match: IfMatch = None,
    ) -> None:
        await todos.delete(todo_id, expected_version(if_match))

    @patch("/{todo_id:uuid}/complete", operation_id="CompleteTodo")
    async def complete(
        self,
        todo_id: FromPath[UUID],
        todos: NamedDependency[TodoService],
        if_match: IfMatch = None,
    ) -> Response[Todo]:
        return with_etag(await todos.set_completed(todo_id, True, expected_version(if_match)))

    @patch("/{todo_id:uuid}/reopen", operation_id="ReopenTodo")
    async def reopen(
        self,
        todo_id: FromPath[UUID],
        todos: NamedDependency[TodoService],
        if_match: IfMatch = None,
    ) -> Response[Todo]:
        return with_etag(await todos.set_completed(todo_id, False, expected_version(if_match)))

    @post("/{todo_id:uuid}/restore", operation_id="RestoreTodo", status_code=200)
    async def restore(
        self, todo_id: FromPath[UUID], todos: NamedDependency[TodoService]
    ) -> Response[Todo]:
        return with_etag(await todos.restore(todo_id))
