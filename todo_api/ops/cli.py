"""Operator commands behind the justfile recipes: `python -m todo_api <command>`.

Plain argparse rather than Litestar's CLI: these commands decide DATABASE_URL (starting the
embedded PostgreSQL when it is unset) before the app, which reads it, is imported.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, get_args

from todo_api.core.config import Settings, SettingsError, load_settings
from todo_api.core.identity import Role

PROJECT_ROOT = Path(__file__).resolve().parents[2]
EMBEDDED_DATA_DIR = PROJECT_ROOT / ".data" / "pg"
EMBEDDED_DATABASE = "todo_api"
# uvicorn builds the app in each worker (factory mode): nothing is built at import time.
APP_FACTORY = "todo_api.app:create_app"


@contextmanager
def database_url() -> Iterator[str]:
    """DATABASE_URL if set; else the embedded server under .data/ (stopped on exit if started here)."""
    if url := os.environ.get("DATABASE_URL"):
        yield url
        return
    if os.environ.get("APP_ENV") == "prod":
        sys.exit("error: DATABASE_URL must be set when APP_ENV=prod (no embedded database in prod)")
    from todo_api.ops.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(EMBEDDED_DATA_DIR)
    already_running = server.running_port() is not None
    server.start()
    try:
        _ensure_database(server.url(), EMBEDDED_DATABASE)
        url = server.url(EMBEDDED_DATABASE)
        print(f"embedded PostgreSQL at {url} (data in {EMBEDDED_DATA_DIR})", file=sys.stderr)
        os.environ["DATABASE_URL"] = url
        yield url
    finally:
        if not already_running:
            server.stop()


def _ensure_database(admin_url: str, name: str) -> None:
    import asyncpg

    async def create() -> None:
        connection = await asyncpg.connect(admin_url)
        try:
            exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
            if not exists:
                await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    asyncio.run(create())


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        sys.exit(f"error: {exc}")


def migrate() -> None:
    """Apply pending migrations."""
    from todo_api.core import db

    with database_url() as url:
        asyncio.run(db.migrate(url))


def migrate_down(steps: int) -> None:
    """Reverse the last `steps` migrations of the app's tables (default 1)."""
    from todo_api.core import db

    with database_url() as url:
        undone = asyncio.run(db.migrate_down(url, steps))
    if not undone:
        print("migrate-down: no migration to reverse")
    for migration_id in undone:
        print(f"migrate-down: reversed {migration_id}")


def import_users(csv_path: str | None, source_url: str | None, query: str | None) -> None:
    """Bring accounts over from another backend with their password hashes (bcrypt, passlib's
    pbkdf2-sha256, argon2id): from a CSV file, or from a query against its database. Columns:
    email, password_hash (or hashed_password), and optionally username, display_name (or
    full_name), is_active, role (or is_superuser). All rows are checked before any is written."""
    import csv

    from todo_api.core import db
    from todo_api.core.identity import Client
    from todo_api.users.service import import_accounts, imported_account

    async def read_query(url: str, sql: str) -> list[dict[str, Any]]:
        import asyncpg

        connection = await asyncpg.connect(url)
        try:
            return [dict(row) for row in await connection.fetch(sql)]
        finally:
            await connection.close()

    if csv_path is not None:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            rows: list[dict[str, Any]] = list(csv.DictReader(handle))
    elif source_url is not None and query is not None:
        rows = asyncio.run(read_query(source_url, query))
    else:
        sys.exit("error: give a CSV file, or --from-database URL and --query SQL")
    accounts, problems = [], []
    for number, row in enumerate(rows, start=1):
        try:
            accounts.append(imported_account(row))
        except ValueError as exc:
            problems.append(f"row {number}: {exc}")
    if problems:
        sys.exit("error: nothing imported\n" + "\n".join(problems))

    async def run() -> tuple[int, int]:
        async with db.connection_pool(settings):
            return await import_accounts(accounts, Client(ip="", user_agent="cli"))

    with database_url():
        settings = _settings()
        created, skipped = asyncio.run(run())
    print(f"import-users: created {created} accounts, skipped {skipped} already present")


def _run_uvicorn(settings: Settings, **options: Any) -> None:
    import uvicorn

    from todo_api.web.server import PROTOCOL

    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=settings.host,
        port=settings.port,
        # uvicorn trusts X-Forwarded-For from 127.0.0.1 by default; trust only configured proxies.
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=",".join(settings.trusted_proxies),
        server_header=False,
        # httptools with a bound on request heads (431 beyond MAX_HEADER_BYTES).
        http=PROTOCOL,
        # Every request is logged once by the app (todo_api/web/logs.py), with its request id.
        access_log=False,
        **options,
    )


def dev() -> None:
    """Serve with auto-reload (embedded PostgreSQL when DATABASE_URL is unset)."""
    _settings()  # a bad variable stops us before anything starts
    with database_url():
        migrate()
        _run_uvicorn(_settings(), reload=True, reload_dirs=[str(PROJECT_ROOT / "todo_api")])


def serve() -> None:
    """Serve production-style: several workers, no reload; migrations are a separate step."""
    _settings()
    with database_url():
        settings = _settings()
        _run_uvicorn(settings, workers=settings.web_concurrency, timeout_graceful_shutdown=30)


def db_shell() -> None:
    """psql against the current database."""
    psql = shutil.which("psql")
    if psql is None:
        from todo_api.ops.embedded import bin_dir

        psql = str(bin_dir() / "psql")
    with database_url() as url:
        subprocess.run([psql, url], check=False)  # noqa: S603 - the operator's own shell


def create_user(email: str, password: str, role: Role) -> None:
    """Create an account with any role (the way to make the first admin)."""
    from todo_api.core import db
    from todo_api.core.identity import Client
    from todo_api.core.pagination import Cursors
    from todo_api.users.passwords import Passwords
    from todo_api.users.service import UserService

    async def run() -> None:
        passwords = Passwords(settings)
        try:
            async with db.connection_pool(settings):
                service = UserService(
                    passwords, Cursors(settings.key_for("cursor")), Client(ip="", user_agent="cli")
                )
                user = await service.create_from_fields(email, password, role)
        finally:
            passwords.close()
        print(f"created {user.role} {user.email} ({user.id})")

    with database_url():
        settings = _settings()
        asyncio.run(run())


def admin_user(username: str | None, password: str | None) -> None:
    """Create an active staff superuser for the admin UI at /admin/, or set its password
    (prompts for what is not given)."""
    from piccolo.apps.user.commands.create import (
        get_confirmed_password,
        get_password,
        get_username,
    )

    from todo_api.core import db
    from todo_api.ops.admin import save_staff_user

    try:
        if username is None:
            username = get_username()
        if password is None:
            password = get_password()
            if password != get_confirmed_password():
                sys.exit("error: the passwords do not match")
    except (EOFError, KeyboardInterrupt):
        sys.exit("error: cancelled")

    async def run(name: str, secret: str) -> str:
        async with db.connection_pool(settings):
            return await save_staff_user(name, secret)

    with database_url():
        settings = _settings()
        try:
            print(asyncio.run(run(username, password)))
        except ValueError as exc:
            sys.exit(f"error: {exc}")


def cleanup() -> None:
    """Purge dead sessions, old tombstones and expired idempotency keys once."""
    from todo_api.core import db
    from todo_api.ops import jobs

    async def run() -> jobs.CleanupResult:
        async with db.connection_pool(settings):
            return await jobs.cleanup(settings)

    with database_url():
        settings = _settings()
        result = asyncio.run(run())
    if result.ran:
        print(
            f"cleanup: deleted {result.sessions_deleted} sessions, "
            f"{result.todos_purged} to-do tombstones, "
            f"{result.idempotency_keys_deleted} idempotency keys, "
            f"{result.auth_events_deleted} audit events, "
            f"{result.staff_sessions_deleted} admin sessions"
        )
    else:
        print("cleanup: another process holds the cleanup lock; nothing done")


def check_settings() -> None:
    """Validate the environment's settings and exit non-zero naming the bad variable."""
    settings = _settings()
    print(f"settings ok (APP_ENV={settings.app_env})")


COMMANDS: dict[str, Callable[[], None]] = {
    "dev": dev,
    "serve": serve,
    "migrate": migrate,
    "cleanup": cleanup,
    "db-shell": db_shell,
    "check-settings": check_settings,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m todo_api", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, function in COMMANDS.items():
        commands.add_parser(name, help=function.__doc__).set_defaults(run=lambda _, f=function: f())
    add_user = commands.add_parser("create-user", help=create_user.__doc__)
    add_user.add_argument("email")
    add_user.add_argument("password")
    add_user.add_argument("role", choices=get_args(Role))
    add_user.set_defaults(run=lambda a: create_user(a.email, a.password, a.role))
    down = commands.add_parser("migrate-down", help=migrate_down.__doc__)
    down.add_argument("steps", nargs="?", type=int, default=1)
    down.set_defaults(run=lambda a: migrate_down(a.steps))
    importing = commands.add_parser("import-users", help=import_users.__doc__)
    importing.add_argument("csv_path", nargs="?", metavar="FILE.csv")
    importing.add_argument("--from-database", dest="source_url", metavar="URL")
    importing.add_argument("--query", metavar="SQL")
    importing.set_defaults(run=lambda a: import_users(a.csv_path, a.source_url, a.query))
    staff = commands.add_parser("admin-user", help=admin_user.__doc__)
    staff.add_argument("username", nargs="?")
    staff.add_argument("password", nargs="?")
    staff.set_defaults(run=lambda a: admin_user(a.username, a.password))
    args = parser.parse_args(argv)
    from todo_api.core.errors import DomainError

    try:
        args.run(args)
    except DomainError as exc:
        sys.exit(f"error: {exc.message}")


if __name__ == "__main__":
    main()
