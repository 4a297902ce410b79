"""Start what a benchmark measures: a throwaway embedded PostgreSQL, migrated, and the app
running under `serve` on a free loopback port."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from todo_api import db
from todo_api.embedded import FAST_UNSAFE_OPTIONS, EmbeddedPostgres, free_port

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def serving(**env: str) -> Iterator[tuple[str, str]]:
    """(base URL of the app, database URL); `env` overrides the app's environment."""
    server = EmbeddedPostgres(
        Path(tempfile.mkdtemp(prefix="todo-api-bench-")) / "pg", options=FAST_UNSAFE_OPTIONS
    )
    server.start()
    port = free_port()
    app = None
    try:
        asyncio.run(db.migrate(server.url()))
        app = subprocess.Popen(  # our own CLI
            [sys.executable, "-m", "todo_api.cli", "serve"],
            cwd=ROOT,
            env={
                **os.environ,
                "DATABASE_URL": server.url(),
                "PORT": str(port),
                "WEB_CONCURRENCY": "1",
                **env,
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base_url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                if httpx.get(f"{base_url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError("the app did not become ready")
        yield base_url, server.url()
    finally:
        if app is not None:
            app.terminate()
            app.wait(timeout=30)
        server.delete()
