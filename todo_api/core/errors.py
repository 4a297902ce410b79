"""Domain errors, and the one place every error becomes an RFC 9457 problem response."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any, ClassVar

from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIFormat, OpenAPIType, Schema
from litestar.plugins.problem_details import (
    ProblemDetailsConfig,
    ProblemDetailsException,
    ProblemDetailsPlugin,
)

from todo_api.core import db

# Seconds a client should wait before retrying while the database is unavailable.
RETRY_AFTER_DB_SECONDS = 2

logger = logging.getLogger(__name__)

# Litestar raises these with the bare status phrase; say what it means for the client.
_PLAIN_DETAILS: dict[int, str] = {
    HTTPStatus.NOT_FOUND: "Nothing exists at this path.",
    HTTPStatus.METHOD_NOT_ALLOWED: "This path does not accept this method; see the Allow header.",
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: "The request body is larger than the server accepts.",
    HTTPStatus.UNAUTHORIZED: "Authentication is required: send a valid access token.",
    HTTPStatus.TOO_MANY_REQUESTS: "Too many requests; retry after the time in Retry-After.",
}


class DomainError(Exception):
    """A rule was broken; `message` is safe to show to the client."""

    status_code: ClassVar[int] = HTTPStatus.BAD_REQUEST

    def __init__(self, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})


class BadRequest(DomainError):
    status_code = HTTPStatus.BAD_REQUEST


class Unauthorized(DomainError):
    status_code = HTTPStatus.UNAUTHORIZED


class Forbidden(DomainError):
    status_code = HTTPStatus.FORBIDDEN


class NotFound(DomainError):
    status_code = HTTPStatus.NOT_FOUND


class Conflict(DomainError):
    status_code = HTTPStatus.CONFLICT


class Gone(DomainError):
    status_code = HTTPStatus.GONE


class VersionMismatch(DomainError):
    status_code = HTTPStatus.PRECONDITION_FAILED


class Unprocessable(DomainError):
    status_code = HTTPStatus.UNPROCESSABLE_ENTITY


class TooManyRequests(DomainError):
    status_code = HTTPStatus.TOO_MANY_REQUESTS


class ServiceUnavailable(DomainError):
    status_code = HTTPStatus.SERVICE_UNAVAILABLE


def problem(
    status: int,
    detail: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> ProblemDetailsException:
    """A problem with `type` about:blank, so `title` is the status phrase (RFC 9457 §4.2.1)."""
    headers = dict(headers or {})
    if status == HTTPStatus.UNAUTHORIZED:
        # RFC 9110 §15.5.2: every 401 names the scheme that would succeed.
        headers.setdefault("WWW-Authenticate", "Bearer")
    return ProblemDetailsException(
        status_code=status,
        type_="about:blank",
        title=HTTPStatus(status).phrase,
        detail=detail or "",
        headers=headers,
        extra=extra or None,
    )


def _domain_error(exc: DomainError) -> ProblemDetailsException:
    return problem(exc.status_code, exc.message, headers=exc.headers)


def _http_exception(exc: HTTPException) -> ProblemDetailsException:
    extra: dict[str, Any] = {}
    if isinstance(exc, ValidationException) and exc.extra:
        extra["errors"] = exc.extra
    detail = exc.detail
    if detail == HTTPStatus(exc.status_code).phrase:
        detail = _PLAIN_DETAILS.get(exc.status_code, detail)
    headers = dict(exc.headers or {})
    if exc.status_code == HTTPStatus.TOO_MANY_REQUESTS and "RateLimit-Reset" in headers:
        # Litestar's rate limiter sends the draft RateLimit-* headers; clients know Retry-After.
        headers.setdefault("Retry-After", str(max(1, int(headers["RateLimit-Reset"]))))
    return problem(exc.status_code, detail, headers=headers, **extra)


def _database_unavailable(exc: Exception) -> ProblemDetailsException:
    logger.warning("database unavailable: %s", type(exc).__name__)
    return problem(
        HTTPStatus.SERVICE_UNAVAILABLE,
        "The database is unavailable; try again shortly.",
        headers={"Retry-After": str(RETRY_AFTER_DB_SECONDS)},
    )


def _unexpected(exc: Exception) -> ProblemDetailsException:
    logger.error("unhandled %s", type(exc).__name__, exc_info=exc)
    return problem(HTTPStatus.INTERNAL_SERVER_ERROR, "An unexpected error occurred.")


# What every error response's body looks like; todo_api/web/openapi.py publishes it for every 4xx/5xx.
PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_DETAILS_SCHEMA = Schema(
    title="ProblemDetails",
    type=OpenAPIType.OBJECT,
    description="An RFC 9457 problem. `type` is always about:blank, so `title` is the status phrase.",
    required=["type", "title", "status", "detail"],
    properties={
        "type": Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.URI_REFERENCE),
        "title": Schema(type=OpenAPIType.STRING),
        "status": Schema(type=OpenAPIType.INTEGER, minimum=400, maximum=599),
        "detail": Schema(type=OpenAPIType.STRING),
        "errors": Schema(
            type=OpenAPIType.ARRAY,
            description="On a validation failure: what failed, where",
            items=Schema(
                type=OpenAPIType.OBJECT,
                required=["message"],
                properties={
                    "message": Schema(type=OpenAPIType.STRING),
                    "key": Schema(type=OpenAPIType.STRING),
                    "source": Schema(type=OpenAPIType.STRING),
                },
            ),
        ),
    },
)


def problem_response(description: str) -> ResponseSpec:
    """An error an operation answers beyond the ones todo_api/web/openapi.py infers, for `responses=`."""
    return ResponseSpec(data_container=None, description=description)


def problem_details_plugin() -> ProblemDetailsPlugin:
    """Every error, ours or Litestar's, as application/problem+json."""
    mapping: dict[type[Exception], Callable[[Any], ProblemDetailsException]] = {
        Exception: _unexpected,
        HTTPException: _http_exception,
        DomainError: _domain_error,
    }
    mapping.update(dict.fromkeys(db.DATABASE_UNAVAILABLE, _database_unavailable))
    return ProblemDetailsPlugin(ProblemDetailsConfig(exception_to_problem_detail_map=mapping))
