"""The published OpenAPI document, completed with what Litestar's generator cannot be told.

Litestar 2.x documents errors in its own `{status_code, detail, extra}` shape as
application/json (litestar-org/litestar#4523), lists only the 400 it infers, gives every
operation the document's bearer requirement, leaves request bodies open to unknown fields, and
calls an optional string parameter "a string or null" (a client sends null as the text "null").
`complete_document` rewrites the built document once, as the app is made: every 4xx/5xx is an
RFC 9457 problem, each operation lists the errors it answers, public operations need no token,
request bodies refuse unknown fields as the decoder does, string parameters are never null.
An operation declares only the errors that cannot be inferred from its traits, with
`responses={409: problem_response("...")}`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.spec import (
    OpenAPI,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    RequestBody,
    Schema,
)
from litestar.routes import HTTPRoute
from litestar.security.base import AbstractSecurityConfig

from todo_api.core.errors import PROBLEM_DETAILS_SCHEMA, PROBLEM_MEDIA_TYPE
from todo_api.web.request import UNSAFE_METHODS, is_json

PROBLEM = Reference(ref="#/components/schemas/ProblemDetails")

# Errors every operation can answer, and the ones an operation answers when it has the trait.
ALWAYS: dict[int, str] = {
    HTTPStatus.INTERNAL_SERVER_ERROR: "An unexpected error",
    HTTPStatus.SERVICE_UNAVAILABLE: "The database is unavailable, or the request took too long; "
    "retry after Retry-After seconds",
}
BAD_INPUT = "Malformed or invalid input; `errors` says what failed where"
TOO_LARGE = "The body is larger than the server accepts (MAX_BODY_BYTES)"
NOT_JSON = "The body is not sent as JSON (Content-Type: application/json)"
NO_TOKEN = "No valid access token, or its session has ended (WWW-Authenticate: Bearer)"
GUARDED = "Not allowed: a role is missing, or the request is cross-site"
CROSS_SITE = "A cookie-authenticated request from another site (send a Bearer token, or call from an allowed origin)"
ABSENT = "Nothing with this id, or not yours"
# By request header: RFC 9110 §13.1.1, and the IETF Idempotency-Key draft.
BY_HEADER: dict[str, tuple[int, str]] = {
    "if-match": (HTTPStatus.PRECONDITION_FAILED, "If-Match names another version (see ETag)"),
    "idempotency-key": (
        HTTPStatus.UNPROCESSABLE_ENTITY,
        "This Idempotency-Key was used with another request body",
    ),
}
RATE_LIMITED = "Too many requests; retry after Retry-After seconds"


def complete_document(app: Litestar, auth: AbstractSecurityConfig[Any, Any]) -> None:
    """Complete `app`'s OpenAPI document in place (Litestar keeps it once it is built)."""
    document = app.openapi_schema
    if document.components.schemas is None:
        document.components.schemas = {}
    document.components.schemas["ProblemDetails"] = PROBLEM_DETAILS_SCHEMA
    public = _public_paths(auth)
    for path, method, handler, operation in _operations(app, document):
        is_public = bool(handler.opt.get(auth.exclude_opt_key)) or bool(public.search(path))
        _document_errors(handler, operation, method, needs_token=not is_public)
        if is_public:
            # An empty list overrides the document's bearer requirement: no token needed.
            operation.security = []
        _refuse_unknown_fields(document, handler, operation)
        _no_null_strings(operation)


def _public_paths(auth: AbstractSecurityConfig[Any, Any]) -> re.Pattern[str]:
    patterns = [auth.exclude] if isinstance(auth.exclude, str) else list(auth.exclude or [])
    # A pattern that matches nothing when nothing is excluded.
    return re.compile("|".join(patterns) or r"(?!)")


def _operations(
    app: Litestar, document: OpenAPI
) -> Iterator[tuple[str, str, HTTPRouteHandler, Operation]]:
    """Each documented operation with its path, method and the handler that answers it."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        path = route.path_format or "/"
        item = (document.paths or {}).get(path)
        for handler in route.route_handlers:
            for method in handler.http_methods:
                operation = getattr(item, method.lower(), None)
                if isinstance(operation, Operation):
                    yield path, method, handler, operation


def _document_errors(
    handler: HTTPRouteHandler, operation: Operation, method: str, needs_token: bool
) -> None:
    """List every error the operation answers, each as a problem; a 204 has no body."""
    parameters = [p for p in operation.parameters or [] if isinstance(p, Parameter)]
    errors: dict[int, str] = dict(ALWAYS)
    if parameters or operation.request_body:
        errors[HTTPStatus.BAD_REQUEST] = BAD_INPUT
    if operation.request_body:
        errors[HTTPStatus.REQUEST_ENTITY_TOO_LARGE] = TOO_LARGE
        if isinstance(operation.request_body, RequestBody) and any(
            is_json(media) for media in operation.request_body.content
        ):
            errors[HTTPStatus.UNSUPPORTED_MEDIA_TYPE] = NOT_JSON
    if needs_token:
        errors[HTTPStatus.UNAUTHORIZED] = NO_TOKEN
        if method.upper() in UNSAFE_METHODS:
            errors[HTTPStatus.FORBIDDEN] = CROSS_SITE
    if handler.resolve_guards():
        errors[HTTPStatus.FORBIDDEN] = GUARDED
    if any(p.param_in == "path" for p in parameters):
        errors[HTTPStatus.NOT_FOUND] = ABSENT
    for parameter in parameters:
        if parameter.param_in == "header" and parameter.name.lower() in BY_HEADER:
            status, description = BY_HEADER[parameter.name.lower()]
            errors[status] = description
    # The key the rate limiter reads (todo_api/auth/rate_limits.py).
    if handler.opt.get("rate_limit"):
        errors[HTTPStatus.TOO_MANY_REQUESTS] = RATE_LIMITED

    responses = dict(operation.responses or {})
    declared = handler.responses or {}
    for status, description in errors.items():
        if status not in declared:
            responses[str(int(status))] = OpenAPIResponse(description=description)
    for code, response in responses.items():
        if not isinstance(response, OpenAPIResponse):
            continue
        if int(code) >= HTTPStatus.BAD_REQUEST:
            response.content = {PROBLEM_MEDIA_TYPE: OpenAPIMediaType(schema=PROBLEM)}
        elif int(code) == HTTPStatus.NO_CONTENT:
            # Litestar gives `Response[None]` a JSON `null` body; a 204 has none (RFC 9110 §15.3.5).
            response.content = None
    operation.responses = dict(sorted(responses.items()))


def _refuse_unknown_fields(
    document: OpenAPI, handler: HTTPRouteHandler, operation: Operation
) -> None:
    """`additionalProperties: false` on a request body whose Struct forbids unknown fields."""
    body = handler.parsed_data_field
    struct = body.annotation if body is not None else None
    if not (
        isinstance(operation.request_body, RequestBody)
        and isinstance(struct, type)
        and issubclass(struct, msgspec.Struct)
        and struct.__struct_config__.forbid_unknown_fields
    ):
        return
    for media in operation.request_body.content.values():
        schema = media.schema
        if isinstance(schema, Reference):
            schema = (document.components.schemas or {}).get(schema.ref.rsplit("/", 1)[-1])
        if isinstance(schema, Schema):
            schema.additional_properties = False


def _no_null_strings(operation: Operation) -> None:
    """Drop the `null` alternative of optional string parameters: sent as the text "null", it
    is that string, not an absent value (`oneOf: [string, null]` becomes the string schema)."""
    for parameter in operation.parameters or []:
        schema = parameter.schema if isinstance(parameter, Parameter) else None
        if not (isinstance(schema, Schema) and schema.one_of):
            continue
        kept = [
            alternative
            for alternative in schema.one_of
            if not (isinstance(alternative, Schema) and alternative.type == OpenAPIType.NULL)
        ]
        if len(kept) == 1 and isinstance(kept[0], Schema) and kept[0].type == OpenAPIType.STRING:
            schema.one_of = None
            for field in dataclasses.fields(kept[0]):
                if getattr(schema, field.name) is None:
                    setattr(schema, field.name, getattr(kept[0], field.name))
