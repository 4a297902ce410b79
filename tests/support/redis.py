"""Redis for rate-limit counters shared by several app processes, when one is running."""

from __future__ import annotations

import ipaddress
import socket
import uuid

REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_reachable() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        return False
    return True


def random_address() -> str:
    """A client from the IPv6 documentation range, another /64 on every call, so a test's
    counters never meet another run's in a shared Redis."""
    # Random in the /64 part too: rate limits count an IPv6 client by its /64.
    return str(ipaddress.IPv6Address(f"2001:db8:{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}::1"))
