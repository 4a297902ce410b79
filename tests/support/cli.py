"""The operator commands (`python -m todo_api ...`) in processes of their own."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from tests.support.database import TEST_ENV
from todo_api.core.config import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
# The command line the justfile's recipes run (they are run from REPO_ROOT).
CLI = [sys.executable, "-m", "todo_api"]


def process_env(database_url: str, **overrides: str) -> dict[str, str]:
    """The environment of an app process on `database_url` with the test settings; none of the
    app's settings is inherited from this shell (a REDIS_URL or DATABASE_URL of the developer's
    must not leak in)."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        if name.lower() not in Settings.__struct_fields__
    }
    return {**inherited, **TEST_ENV, "DATABASE_URL": database_url, **overrides}


def run_cli(
    database_url: str, *args: str, stdin: str = "", env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m todo_api ARGS` against `database_url`, as an operator runs it, `stdin` typed
    in; `env` adds to (or overrides) the test settings."""
    return subprocess.run(
        [*CLI, *args],
        cwd=REPO_ROOT,
        env=process_env(database_url, **(env or {})),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
