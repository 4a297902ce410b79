"""Piccolo's configuration: the engine (from DATABASE_URL) and the apps."""

import os

from piccolo.conf.apps import AppRegistry

from todo_api.core.db import Engine

DB = Engine(
    config={"dsn": os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1/todo_api")}
)

APP_REGISTRY = AppRegistry(
    apps=[
        "todo_api.piccolo_app",
        # Staff accounts and their sessions for the admin UI (todo_api/ops/admin.py).
        "piccolo.apps.user.piccolo_app",
        "piccolo_api.session_auth.piccolo_app",
    ]
)
