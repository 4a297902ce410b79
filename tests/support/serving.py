"""`python -m todo_api serve` in a process (and process group) of its own on a free loopback
port, and clients that talk to it over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path

import httpx

from tests.support.cli import CLI, REPO_ROOT, process_env
from todo_api.ops.embedded import free_port

# uvicorn's graceful shutdown in `serve`.
GRACEFUL_SHUTDOWN_SECONDS = 30
HTTP_TIMEOUT = httpx.Timeout(15.0, connect=5.0)


def app_env(database_url: str, **overrides: str) -> dict[str, str]:
    """The environment of a `serve` process: the test settings on a port of its own."""
    serve = {
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        "WEB_CONCURRENCY": "1",
        "CLEANUP_INTERVAL_SECONDS": "0",
        "LOG_LEVEL": "INFO",
    }
    return process_env(database_url, **{**serve, **overrides})


async def answers_ready(base_url: str, patience: float = 2.0) -> bool:
    """Whether GET /ready answers 200 within `patience` seconds."""
    async with httpx.AsyncClient(base_url=base_url, timeout=patience) as client:
        with contextlib.suppress(httpx.HTTPError):
            return (await client.get("/ready")).status_code == 200
    return False


class ServeProcess:
    """`python -m todo_api serve` in a process group of its own, output to a log file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.port = int(env["PORT"])
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # our own CLI
                [*CLI, "serve"],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def wait_ready(self, seconds: float = 30.0) -> None:
        """Until /ready answers 200; raises with the log's tail if the process dies or is slow."""
        assert self.process is not None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"serve exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            if await answers_ready(self.url, patience=1.0):
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"serve was not ready within {seconds} s:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def send(self, sig: signal.Signals) -> None:
        """A signal to the server process itself (as an orchestrator sends SIGTERM)."""
        assert self.process is not None
        if self.process.returncode is None:
            os.kill(self.process.pid, sig)

    def kill_group(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """A signal to the server and its workers, as when a container dies. Only while the
        leader is unreaped, so its id cannot have been reused by an unrelated process."""
        assert self.process is not None
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self, grace: float = GRACEFUL_SHUTDOWN_SECONDS + 5) -> None:
        """Make sure nothing of this server is left running (for `finally` blocks): SIGTERM,
        and SIGKILL for the whole group if it is not gone after `grace` seconds."""
        if self.process is None or self.process.returncode is not None:
            return
        self.kill_group(signal.SIGCONT)  # a SIGSTOPped server cannot act on SIGTERM
        self.send(signal.SIGTERM)
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill_group(signal.SIGKILL)
            self.process.wait(timeout=10)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, chars: int = 3000) -> str:
        return self.log()[-chars:]


# `start_server(database_url, **env)`, the fixture in tests/conftest.py.
StartServer = Callable[..., ServeProcess]


@contextlib.asynccontextmanager
async def serving(
    envs: Sequence[dict[str, str]], log_dir: Path
) -> AsyncIterator[list[ServeProcess]]:
    """Start one `serve` per environment, wait until all are ready, stop them all on exit."""
    servers = [
        ServeProcess(env, log_dir / f"serve-{env['PORT']}-{uuid.uuid4().hex[:6]}.log")
        for env in envs
    ]
    try:
        for server in servers:
            server.start()
        await asyncio.gather(*(server.wait_ready() for server in servers))
        yield servers
    finally:
        for server in servers:
            server.stop()


def http(
    base_url: str, concurrency: int = 20, timeout: httpx.Timeout = HTTP_TIMEOUT
) -> httpx.AsyncClient:
    """A client like a mobile app's: bearer tokens in headers, no cookie jar (so a request
    carries exactly the credentials it is given)."""
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=timeout,
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
    )
