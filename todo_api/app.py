"""The application factory: wiring only (plugins, middleware, routes, providers).

Served through uvicorn's factory mode (`todo_api.app:create_app`): nothing is built at import.
A new resource adds its controller to `route_handlers` and its PROVIDERS to `dependencies`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.plugins import RedocRenderPlugin, SwaggerRenderPlugin

from todo_api.auth import controller as auth
from todo_api.auth.authentication import build_auth
from todo_api.auth.rate_limits import RATE_LIMIT_STORE, rate_limit_store, rate_limits
from todo_api.context import AppContext
from todo_api.core import db
from todo_api.core.config import Settings, load_settings
from todo_api.core.errors import problem_details_plugin
from todo_api.ops.admin import admin_handler
from todo_api.ops.jobs import periodic_cleanup
from todo_api.todos import controller as todos
from todo_api.users import controller as users
from todo_api.web.allow import allow_every_method
from todo_api.web.hardening import cors_config, request_timeout, security_headers
from todo_api.web.health import HealthController
from todo_api.web.logs import log_request, logging_config, request_timer
from todo_api.web.openapi import complete_document
from todo_api.web.request import StrictRequest
from todo_api.web.request_id import add_request_id_header


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the app for `settings` (default: from the environment). Connects only in its lifespan."""
    settings = settings or load_settings()
    context = AppContext.build(settings)
    authentication = build_auth(settings, context.keys)

    @asynccontextmanager
    async def database(_: Litestar) -> AsyncIterator[None]:
        async with (
            db.connection_pool(settings),
            context.live_sessions.listener(settings.database_url),
            periodic_cleanup(settings),
        ):
            yield
        context.passwords.close()

    def provide_settings() -> Settings:
        return settings

    def outermost(app_config: AppConfig) -> AppConfig:
        # Runs after the auth config's hook has put its middleware first: the timer and the
        # request timeout go around authentication too (its session check is a query).
        app_config.middleware[0:0] = [
            request_timer,
            request_timeout(settings.request_timeout_seconds),
        ]
        return app_config

    app = Litestar(
        route_handlers=[
            HealthController,
            auth.AuthController,
            users.MeController,
            users.UsersController,
            todos.TodoController,
            admin_handler(context),
        ],
        dependencies={
            "settings": Provide(provide_settings, use_cache=True, sync_to_thread=False),
            **auth.PROVIDERS,
            **users.PROVIDERS,
            **todos.PROVIDERS,
        },
        state=State(context.state()),
        lifespan=[database],
        on_app_init=[authentication.on_app_init, outermost],
        middleware=rate_limits(settings),
        cors_config=cors_config(settings),
        logging_config=logging_config(settings),
        stores={RATE_LIMIT_STORE: rate_limit_store(settings)},
        plugins=[problem_details_plugin()],
        before_send=[
            add_request_id_header,
            security_headers(settings),
            allow_every_method,
            log_request,
        ],
        request_class=StrictRequest,
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
    complete_document(app, authentication)
    return app
