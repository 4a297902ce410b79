"""OPTIONS: `Allow` lists every method of the path, as RFC 9110 §9.3.7 asks."""

from __future__ import annotations

from litestar import Litestar
from litestar.datastructures import MutableScopeHeaders
from litestar.routes import HTTPRoute
from litestar.types import Message, Scope


async def allow_every_method(message: Message, scope: Scope) -> None:
    """`before_send` hook correcting Litestar's answer to OPTIONS.

    Litestar 2.x builds a path's OPTIONS handler with the route of the first handler registered
    on that path, so its `Allow` leaves out the methods of the handlers added to the path later
    (litestar-org/litestar#4169, fixed only in 3.0): `Allow: OPTIONS, POST` on /api/v1/todos.
    """
    if scope.get("method") != "OPTIONS" or message["type"] != "http.response.start":
        return
    headers = MutableScopeHeaders.from_message(message)
    if "allow" not in headers:
        return
    template = scope.get("path_template")
    methods = {
        method
        for route in Litestar.from_scope(scope).routes
        if isinstance(route, HTTPRoute) and route.path_format == template
        for method in route.methods
    }
    if methods:
        headers["Allow"] = ", ".join(sorted(methods))
