"""py-spy of ours under load: where the server's CPU goes, by function and by library.

    uv run --group bench --with py-spy python -m benchmarks.bench --profile [--quick]

Samples ours (one worker) with `py-spy record --format raw` (100 Hz) while wrk drives the
list scenario, then folds the stacks into: the functions with the most own time (leaf frames),
the most inclusive time, and the share of each library. Written to
benchmarks/results/profile.txt (and the raw stacks next to it).
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
AREAS = (
    ("todo_api/", "todo_api (ours)"),
    ("litestar/", "litestar"),
    ("piccolo/", "piccolo"),
    ("asyncpg/", "asyncpg"),
    ("uvicorn/", "uvicorn"),
    ("h11/", "h11"),
    ("jwt/", "pyjwt"),
    ("msgspec/", "msgspec"),
    ("logging/", "logging (stdlib)"),
    ("asyncio/", "asyncio (stdlib)"),
    ("uvloop", "uvloop (native event loop)"),
    ("httptools_impl", "uvicorn"),
)


def short(path: str) -> str:
    for marker in ("site-packages/", "lib/python3", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "lib/python3":
                path = "stdlib/" + path.split("/", 1)[-1]
            break
    return path


def area(path: str) -> str:
    for marker, name in AREAS:
        if marker in path:
            return name
    return "stdlib and other"


def parse(raw: str) -> list[tuple[list[tuple[str, str]], int]]:
    stacks = []
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = []
        for frame in stack.split(";"):
            match = _FRAME.match(frame)
            if match:
                frames.append((match["func"], short(match["file"])))
            else:
                frames.append((frame, ""))
        stacks.append((frames, int(count)))
    return stacks


# Waits py-spy does not recognise as idle (a thread pool's queue, the log listener, epoll).
IDLE_LEAVES = {
    ("_worker", "concurrent/futures/thread.py"),
    ("Condition.wait", "threading.py"),
    ("EpollSelector.select", "selectors.py"),
}


def summarise(raw: str, top: int = 15) -> dict[str, Any]:
    parsed = parse(raw)
    stacks = [(f, n) for f, n in parsed if f and (f[-1][0], f[-1][1]) not in IDLE_LEAVES]
    idle = sum(n for _, n in parsed) - sum(n for _, n in stacks)
    total = sum(count for _, count in stacks) or 1
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    areas: collections.Counter[str] = collections.Counter()
    for frames, count in stacks:
        if not frames:
            continue
        func, path = frames[-1]
        if (func, path) == ("Runner.run", "asyncio/runners.py"):
            # uvloop's loop is C: its own work (socket I/O, callbacks) shows up here.
            func, path = "[uvloop event loop: socket I/O, scheduling (native)]", "uvloop"
        own[f"{func} ({path})"] += count
        areas[area(path)] += count
        for name in {f"{f} ({p})" for f, p in frames}:
            inclusive[name] += count
    return {
        "samples": total,
        "idle_samples_dropped": idle,
        "own": [(name, round(100 * n / total, 1)) for name, n in own.most_common(top)],
        "inclusive": [(name, round(100 * n / total, 1)) for name, n in inclusive.most_common(40)],
        "areas": [(name, round(100 * n / total, 1)) for name, n in areas.most_common()],
    }


def record(pid: int, load: Callable[[], Any], seconds: float) -> dict[str, Any]:
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        sys.exit(
            "error: py-spy is not installed; run "
            "`uv run --group bench --with py-spy python -m benchmarks.bench --profile`"
        )
    out = Path(__file__).resolve().parent / "results" / "profile.raw.txt"
    out.parent.mkdir(exist_ok=True)
    spy = subprocess.Popen(  # noqa: S603
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "100",
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.setdefault("load", load()))
    thread.start()
    thread.join()
    _, err = spy.communicate(timeout=seconds + 60)
    if spy.returncode != 0 or not out.exists():
        raise RuntimeError(f"py-spy failed: {err.decode()[-2000:]}")
    summary = summarise(out.read_text())
    run = result["load"]
    summary["load"] = {"rps": round(run.rps, 1), "p50_ms": run.p50_ms, "p99_ms": run.p99_ms}
    return summary


def write(summary: dict[str, Any], path: Path) -> None:
    load = summary["load"]
    lines = [
        "py-spy of ours (1 worker) under wrk list load (first page, 32 connections): "
        f"{load['rps']} req/s during sampling (py-spy, 100 Hz), "
        f"{summary['samples']} busy samples ({summary['idle_samples_dropped']} idle waits "
        "dropped). Shares are of the busy samples; multiply by the CPU-µs per request from "
        "latest.md for a per-request cost.",
        "",
        "Own time (the function itself, leaf frames), top:",
    ]
    lines += [f"  {share:5.1f}%  {name}" for name, share in summary["own"]]
    lines += ["", "Inclusive time (the function and what it calls), top:"]
    lines += [f"  {share:5.1f}%  {name}" for name, share in summary["inclusive"]]
    lines += ["", "Own time by library:"]
    lines += [f"  {share:5.1f}%  {name}" for name, share in summary["areas"]]
    path.write_text("\n".join(lines) + "\n")
