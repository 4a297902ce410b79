"""Where a request came from: the client address (trusting only configured proxies)."""

from __future__ import annotations

import ipaddress
from typing import Any

from litestar.connection import ASGIConnection

from todo_api.core.config import Settings
from todo_api.core.identity import Client


def client_ip(connection: ASGIConnection[Any, Any, Any, Any], settings: Settings) -> str:
    """The socket peer, unless it is a trusted proxy: then the nearest untrusted X-Forwarded-For hop."""
    peer = connection.client.host if connection.client else ""
    if not settings.trusted_proxies or peer not in settings.trusted_proxies:
        return peer
    hops = [hop.strip() for hop in connection.headers.get("x-forwarded-for", "").split(",")]
    for hop in reversed(hops):
        if hop and hop not in settings.trusted_proxies:
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer
    return peer


def client_of(connection: ASGIConnection[Any, Any, Any, Any], settings: Settings) -> Client:
    return Client(
        ip=client_ip(connection, settings), user_agent=connection.headers.get("user-agent", "")
    )
