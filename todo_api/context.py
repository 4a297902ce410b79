"""What the app's handlers, providers and guards share for its lifetime: one typed object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar.connection import ASGIConnection

from todo_api.auth.live_sessions import LiveSessions
from todo_api.auth.tokens import TokenKeys
from todo_api.core.config import Settings
from todo_api.core.identity import Client
from todo_api.core.pagination import Cursors
from todo_api.users.passwords import Passwords
from todo_api.web.client import client_of

_STATE_KEY = "context"


@dataclass(frozen=True, slots=True)
class AppContext:
    settings: Settings
    keys: TokenKeys
    passwords: Passwords
    live_sessions: LiveSessions
    cursors: Cursors

    @classmethod
    def build(cls, settings: Settings) -> AppContext:
        return cls(
            settings=settings,
            keys=TokenKeys(settings),
            passwords=Passwords(settings),
            live_sessions=LiveSessions(),
            cursors=Cursors(settings.key_for("cursor")),
        )

    def state(self) -> dict[str, Any]:
        """The app's initial `state` (Litestar's State is a mapping): this object, under one key."""
        return {_STATE_KEY: self}

    @staticmethod
    def of(connection: ASGIConnection[Any, Any, Any, Any]) -> AppContext:
        """The context of the app serving `connection` (a request, or a guard's connection)."""
        context: AppContext = connection.app.state[_STATE_KEY]
        return context

    def client(self, connection: ASGIConnection[Any, Any, Any, Any]) -> Client:
        """Where `connection` came from, by this app's proxy settings."""
        return client_of(connection, self.settings)
