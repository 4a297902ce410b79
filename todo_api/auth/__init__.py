"""Identity, device sessions, tokens and the audit trail.

What other features may use is exported here, on purpose; everything else in this package is
its own business. (Imports here stay clear of `auth.service`, which imports `users`.)
"""

from todo_api.auth.audit import check_password_failures, record_event
from todo_api.auth.guards import requires_role
from todo_api.auth.live_sessions import sessions_changed
from todo_api.auth.sessions import AuditAs, end_sessions, session_exists

__all__ = [
    "AuditAs",
    "check_password_failures",
    "end_sessions",
    "record_event",
    "requires_role",
    "session_exists",
    "sessions_changed",
]
