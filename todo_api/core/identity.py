"""Who is acting, from where: the caller's identity and roles, shared by every feature."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

Role = Literal["user", "admin", "superadmin"]
ROLE_RANK: dict[str, int] = {"user": 0, "admin": 1, "superadmin": 2}


def has_role(role: str, needed: Role) -> bool:
    """Whether `role` is `needed` or above (an unknown role is below everything)."""
    return ROLE_RANK.get(role, -1) >= ROLE_RANK[needed]


@dataclass(frozen=True, slots=True)
class CurrentUser:
    """The authenticated caller: who, on which device session, with which role."""

    id: uuid.UUID
    session_id: uuid.UUID
    role: str

    def as_actor(self) -> Actor:
        return Actor(role=self.role, user_id=self.id, name=str(self.id))


@dataclass(frozen=True, slots=True)
class Actor:
    """Whoever administers an account: an API admin (`user_id` set) or an operator's staff
    account in the admin UI (no `user_id`, acting as a superadmin). `name` goes into the audit."""

    role: str
    name: str
    user_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class Client:
    """Where a request came from, as far as we can trust it."""

    ip: str
    user_agent: str
