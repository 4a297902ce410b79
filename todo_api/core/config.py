"""Settings: one frozen, typed Struct read from the environment and validated once at start-up."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
from collections.abc import Mapping
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

# Known only so that `prod` can refuse it; dev and test run with it out of the box.
DEFAULT_SECRET_KEY = "dev-only-insecure-secret-key-change-me-0123456789"

PositiveInt = Annotated[int, Meta(ge=1)]
RateLimit = Annotated[str, Meta(pattern=r"^\d+/(second|minute|hour|day)$")]
RATE_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


class SettingsError(ValueError):
    """A variable is missing or malformed; the message names it."""


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything configurable; field `foo_bar` is read from the variable `FOO_BAR`."""

    app_env: Literal["dev", "test", "prod"] = "dev"
    # SQLAlchemy's `postgresql+asyncpg://` form is accepted and read as `postgresql://`.
    database_url: Annotated[str, Meta(pattern=r"^postgres(ql)?://")] = (
        "postgresql://postgres@127.0.0.1:5432/todo_api"
    )
    db_pool_min: Annotated[int, Meta(ge=0, le=100)] = 2
    db_pool_max: Annotated[int, Meta(ge=1, le=200)] = 10
    db_timeout_seconds: Annotated[float, Meta(gt=0, le=60)] = 5.0
    # Server-side limits so one slow query, lock wait or abandoned transaction cannot pin a worker.
    db_statement_timeout_ms: Annotated[int, Meta(ge=100, le=600_000)] = 10_000
    db_lock_timeout_ms: Annotated[int, Meta(ge=100, le=600_000)] = 5_000
    db_idle_in_transaction_timeout_ms: Annotated[int, Meta(ge=100, le=3_600_000)] = 30_000
    # PostgreSQL 17+ only (ignored before): ends the session of a transaction open this long,
    # even one whose client froze mid-statement (which no other limit catches).
    db_transaction_timeout_ms: Annotated[int, Meta(ge=100, le=3_600_000)] = 60_000
    request_timeout_seconds: Annotated[float, Meta(gt=0, le=600)] = 30.0
    secret_key: str = DEFAULT_SECRET_KEY
    access_token_expire_minutes: PositiveInt = 15
    refresh_token_expire_days: PositiveInt = 7
    session_max_age_days: PositiveInt = 30
    refresh_reuse_leeway_seconds: Annotated[int, Meta(ge=0, le=300)] = 10
    allowed_origins: tuple[str, ...] = ()
    cookie_secure: bool = True
    trusted_proxies: tuple[str, ...] = ()
    redis_url: str | None = None
    rate_limit_login: RateLimit = "5/minute"
    rate_limit_register: RateLimit = "5/minute"
    rate_limit_token: RateLimit = "5/minute"
    rate_limit_refresh: RateLimit = "30/minute"
    # Password change and account deletion, per user (each re-checks the password with argon2).
    rate_limit_reverify: RateLimit = "5/minute"
    # Failed logins per account (counted in the audit log, so across processes) before a 429.
    rate_limit_login_failures: RateLimit = "10/hour"
    # argon2id cost; the defaults take ~100-300 ms per hash on a server core.
    argon2_time_cost: Annotated[int, Meta(ge=1, le=20)] = 3
    argon2_memory_kib: Annotated[int, Meta(ge=8, le=4 * 1024 * 1024)] = 65536
    argon2_parallelism: Annotated[int, Meta(ge=1, le=16)] = 1
    # Deleted to-dos stay in the trash (and as sync tombstones) this long before being purged.
    tombstone_retention_days: Annotated[int, Meta(ge=1, le=3650)] = 30
    # Audit events older than this are purged.
    auth_event_retention_days: Annotated[int, Meta(ge=1, le=3650)] = 90
    # Background cleanup of expired sessions (0 = only `just cleanup`).
    cleanup_interval_seconds: Annotated[int, Meta(ge=0)] = 3600
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "console"
    max_body_bytes: PositiveInt = 1024 * 1024
    # A request line and headers longer than this are answered 431 (the server we ship).
    max_header_bytes: Annotated[int, Meta(ge=4096, le=1024 * 1024)] = 64 * 1024
    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=1, le=65535)] = 8000
    web_concurrency: Annotated[int, Meta(ge=1, le=64)] = 2

    def __post_init__(self) -> None:
        if self.db_pool_min > self.db_pool_max:
            raise ValueError("DB_POOL_MIN must not exceed DB_POOL_MAX")
        if self.app_env != "prod":
            return
        if self.secret_key == DEFAULT_SECRET_KEY or len(self.secret_key) < 32:
            raise ValueError(
                "SECRET_KEY must be set to at least 32 random characters when APP_ENV=prod "
                '(e.g. python -c "import secrets; print(secrets.token_urlsafe(48))")'
            )
        if not self.cookie_secure:
            raise ValueError("COOKIE_SECURE cannot be false when APP_ENV=prod")
        if low_entropy(self.secret_key):
            raise ValueError(
                "SECRET_KEY looks guessable (a repeated pattern or too few distinct characters); "
                'use a random one (python -c "import secrets; print(secrets.token_urlsafe(48))")'
            )
        for origin in self.allowed_origins:
            if problem := origin_problem(origin):
                raise ValueError(
                    f"ALLOWED_ORIGINS cannot contain {origin!r} when APP_ENV=prod: {problem}"
                )
        if self.argon2_memory_kib < 19 * 1024 or self.argon2_time_cost < 2:
            raise ValueError(
                "ARGON2_MEMORY_KIB >= 19456 and ARGON2_TIME_COST >= 2 are required when APP_ENV=prod"
            )
        if self.log_format != "json":
            raise ValueError("LOG_FORMAT must be json when APP_ENV=prod")

    @property
    def is_dev(self) -> bool:
        return self.app_env == "dev"

    def key_for(self, purpose: str) -> bytes:
        """A 256-bit key for one purpose, derived from SECRET_KEY, so no two uses share a key."""
        return hmac.new(self.secret_key.encode(), purpose.encode(), hashlib.sha256).digest()


def low_entropy(key: str) -> bool:
    """Obviously guessable: fewer than 10 distinct characters, or a shorter text repeated."""
    if len(set(key)) < 10:
        return True
    return any(
        len(key) % size == 0 and key == key[:size] * (len(key) // size)
        for size in range(1, len(key) // 2 + 1)
    )


def origin_problem(origin: str) -> str | None:
    """Why a browser origin must not be trusted with credentials in prod, or None."""
    if "*" in origin:
        return "wildcards are not allowed (cookies are sent)"
    if origin.strip().lower() == "null":
        return "'null' is the origin of sandboxed frames and local files, any page can have it"
    if not origin.lower().startswith("https://"):
        return "only https:// origins (a plain-http page can be changed on its way)"
    return None


def parse_rate(rate: str) -> tuple[int, str, int]:
    """A RateLimit setting ('5/minute') as (count, unit, seconds in the unit): (5, 'minute', 60)."""
    count, unit = rate.split("/")
    return int(count), unit, RATE_UNITS[unit]


_LIST_FIELDS = {"allowed_origins", "trusted_proxies"}
# SQLAlchemy's driver suffixes: the URL is the same otherwise.
_SQLALCHEMY_SCHEME = re.compile(r"^(postgres(?:ql)?)\+(?:asyncpg|psycopg2?|pg8000)://")
# Variables the FastAPI to-do backends we replace read, and ours that does the job (None: no
# setting, the behaviour is fixed). Set and unread, they would be silently ignored: prod refuses
# to start, dev and test warn. (POSTGRES_* are left alone: the database's own container reads
# them from the same .env.)
FOREIGN_VARIABLES: dict[str, str | None] = {
    "JWT_SECRET": "SECRET_KEY",
    "JWT_SECRET_KEY": "SECRET_KEY",
    "SECRET": "SECRET_KEY",
    "CORS_ORIGINS": "ALLOWED_ORIGINS",
    "BACKEND_CORS_ORIGINS": "ALLOWED_ORIGINS",
    "SQLALCHEMY_DATABASE_URI": "DATABASE_URL",
    "SQLALCHEMY_DATABASE_URL": "DATABASE_URL",
    "REFRESH_TOKEN_EXPIRE_MINUTES": "REFRESH_TOKEN_EXPIRE_DAYS",
    "ALGORITHM": None,
    "JWT_ALGORITHM": None,
}
FIXED_BEHAVIOUR = {
    "ALGORITHM": "access tokens are always HS256",
    "JWT_ALGORITHM": "access tokens are always HS256",
}

logger = logging.getLogger(__name__)
# Outside prod, cookies over plain http are the norm (localhost) unless COOKIE_SECURE says otherwise;
# prod logs are for machines.
_ENV_DEPENDENT_DEFAULTS = {
    "cookie_secure": {"dev": "false", "test": "false", "prod": "true"},
    "log_format": {"dev": "console", "test": "console", "prod": "json"},
}


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from `environ` (default: the process environment); raise SettingsError."""
    environ = os.environ if environ is None else environ
    raw: dict[str, object] = {}
    for name in Settings.__struct_fields__:
        value = environ.get(name.upper())
        if value is None or value == "":
            continue
        raw[name] = _list(name.upper(), value) if name in _LIST_FIELDS else value.strip()
    if isinstance(url := raw.get("database_url"), str):
        raw["database_url"] = _SQLALCHEMY_SCHEME.sub(r"\1://", url)
    app_env = str(raw.get("app_env", "dev"))
    if foreign := _foreign_variables(environ):
        if app_env == "prod":
            raise SettingsError("; ".join(foreign))
        for message in foreign:
            logger.warning("%s", message)
    for name, by_env in _ENV_DEPENDENT_DEFAULTS.items():
        if name not in raw and app_env in by_env:
            raw[name] = by_env[app_env]
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(_name_the_variable(str(exc))) from None


def _list(variable: str, value: str) -> tuple[str, ...]:
    """A list setting: comma-separated (`a, b`) or a JSON array of strings (`["a", "b"]`)."""
    value = value.strip()
    if not value.startswith("["):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    try:
        items = msgspec.json.decode(value, type=list[str])
    except msgspec.DecodeError as exc:
        raise SettingsError(
            f"invalid environment variable {variable}: not a JSON array of strings ({exc})"
        ) from None
    return tuple(item.strip() for item in items if item.strip())


def _foreign_variables(environ: Mapping[str, str]) -> list[str]:
    """One message per variable of another backend that is set here but means nothing to us."""
    messages = []
    for name, ours in FOREIGN_VARIABLES.items():
        if not environ.get(name):
            continue
        if ours is None:
            messages.append(f"{name} is not read by todo-api: {FIXED_BEHAVIOUR[name]}; unset it")
        else:
            messages.append(f"{name} is not read by todo-api: set {ours} instead")
    return messages


def _name_the_variable(message: str) -> str:
    """Turn msgspec's `... - at `$.field`` into a message that names the environment variable."""
    match = re.search(r" - at `\$\.(\w+)", message)
    if match is None:
        return f"invalid settings: {message}"
    variable = match.group(1).upper()
    return f"invalid environment variable {variable}: {message[: match.start()]}"
