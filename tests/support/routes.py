"""The app's own route table, so that a test of "every route" covers a route the day it is added.

A test that calls routes it did not list itself needs what only it knows: a value for each path
parameter and a body for each route that takes one. `Endpoint.url` and `Endpoint.body` fail
loudly when a new route needs something the test does not know yet.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.spec import Operation
from litestar.routes import HTTPRoute

_PARAMETER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Endpoint:
    """One method of one route, e.g. PATCH /api/v1/todos/{todo_id}."""

    method: str
    path: str  # as declared, with its parameters in braces
    handler: HTTPRouteHandler
    operation: Operation | None  # None when the route is not in the OpenAPI document

    def __str__(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def key(self) -> tuple[str, str]:
        return self.method, self.path

    @property
    def public(self) -> bool:
        """Whether its handler opts out of authentication."""
        return bool(self.handler.opt.get("exclude_from_auth"))

    @property
    def takes_body(self) -> bool:
        return "data" in self.handler.parsed_fn_signature.parameters

    def parameters(self, location: str) -> list[str]:
        """The names of its documented parameters in `location`: "query", "header" or "path"."""
        if self.operation is None:
            return []
        return [
            parameter.name
            for parameter in self.operation.parameters or []
            if getattr(parameter, "param_in", None) == location
        ]

    def url(self, **values: str) -> str:
        """Its path with each {parameter} replaced by its value in `values`."""

        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            assert name in values, f"{self}: the test has no value for {{{name}}} yet"
            return values[name]

        return _PARAMETER.sub(value, self.path)

    def body(self, bodies: Mapping[tuple[str, str], Any]) -> Any:
        """What to send: its entry in `bodies` if it takes a body, else None."""
        if not self.takes_body:
            return None
        assert self.key in bodies, f"{self} takes a request body: the test has none for it yet"
        return bodies[self.key]


def endpoints(app: Litestar, under: str = "/") -> list[Endpoint]:
    """Every method of every HTTP route of `app` at or below the path `under`, in path order
    (the OPTIONS Litestar answers for every route aside; the mounted admin is no HTTP route)."""
    prefix = under.rstrip("/")
    paths = app.openapi_schema.paths or {}
    found = []
    for route in app.routes:
        path = route.path_format or "/"
        if not isinstance(route, HTTPRoute) or not (path == under or path.startswith(f"{prefix}/")):
            continue
        item = paths.get(path)
        for handler in route.route_handlers:
            for method in sorted(handler.http_methods - {"OPTIONS"}):
                operation = getattr(item, method.lower(), None) if item is not None else None
                found.append(Endpoint(method, path, handler, operation))
    return sorted(found, key=lambda endpoint: (endpoint.path, endpoint.method))
