"""The application factory: wiring only (plugins, middleware, routes, providers)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.di import Provide
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.plugins import RedocRenderPlugin, SwaggerRenderPlugin

from todo_api import db
from todo_api.config import Settings, load_settings
from todo_api.errors import problem_details_plugin
from todo_api.health import HealthController
from todo_api.request_id import add_request_id_header


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the app for `settings` (default: from the environment). Connects only in its lifespan."""
    settings = settings or load_settings()

    @asynccontextmanager
    async def database(_: Litestar) -> AsyncIterator[None]:
        async with db.connection_pool(settings):
            yield

    def provide_settings() -> Settings:
        return settings

    return Litestar(
        route_handlers=[HealthController],
        dependencies={"settings": Provide(provide_settings, use_cache=True, sync_to_thread=False)},
        lifespan=[database],
        plugins=[problem_details_plugin()],
        before_send=[add_request_id_header],
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="todo-api",
            version="1.0.0",
            description="A multi-device to-do backend.",
            path="/docs",
            render_plugins=[SwaggerRenderPlugin(path="/"), RedocRenderPlugin(path="/redoc")],
        ),
        debug=False,
    )


app = create_app()
