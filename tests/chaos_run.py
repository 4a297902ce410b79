"""The long fault-injection run behind `just chaos` (the building blocks: tests/support/chaos.py).

`python -m tests.chaos_run` runs a few minutes of repeated faults on a throwaway embedded
cluster: SIGKILLs and SIGTERMs of `serve` during loads of idempotent to-do creations,
PostgreSQL stopped and restarted under load, the app's backends terminated under load, and
concurrent cleanup jobs. It prints a summary and exits non-zero if a single acknowledged write
is missing, a row is half-written, a key was applied twice, or anything answered 500.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import random
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from tests.support.chaos import (
    Tally,
    failed,
    phase_cleanups,
    phase_database_faults,
    phase_process_faults,
    report,
)
from todo_api.core import db
from todo_api.ops.embedded import FAST_UNSAFE_OPTIONS, EmbeddedPostgres


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos_run", description=__doc__)
    parser.add_argument("--kills", type=int, default=6, help="SIGKILL rounds")
    parser.add_argument("--sigterms", type=int, default=3, help="SIGTERM rounds")
    parser.add_argument("--db-faults", type=int, default=4, help="database fault rounds")
    parser.add_argument("--cleanups", type=int, default=3, help="concurrent cleanup rounds")
    parser.add_argument("--per-round", type=int, default=600, help="creations per round")
    parser.add_argument("--concurrency", type=int, default=32, help="clients at once")
    parser.add_argument("--seed", type=int, help="for the random kill points")
    args = parser.parse_args(argv)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    random.seed(seed)
    started = time.monotonic()
    load = args.concurrency
    tally = Tally()
    work = Path(tempfile.mkdtemp(prefix="todo-api-chaos-"))
    cluster = EmbeddedPostgres(work / "pg", options=FAST_UNSAFE_OPTIONS)
    print(f"chaos: seed {seed}; server logs in {work}")
    try:
        cluster.start()
        with contextlib.redirect_stdout(io.StringIO()):  # Piccolo's progress report
            await db.migrate(cluster.url())
        print("SIGKILL of serve (2 workers) under load")
        await phase_process_faults(
            tally, cluster.url(), work, signal.SIGKILL, args.kills, args.per_round, load
        )
        print("SIGTERM of serve under load")
        await phase_process_faults(
            tally, cluster.url(), work, signal.SIGTERM, args.sigterms, args.per_round, load
        )
        print("database faults under load")
        await phase_database_faults(tally, cluster, work, args.db_faults, args.per_round, load)
        print("the cleanup job in 3 processes at once")
        await phase_cleanups(tally, cluster.url(), args.cleanups, processes=3)
    finally:
        cluster.delete()
    report(tally, time.monotonic() - started, work)
    if failed(tally):
        return 1
    shutil.rmtree(work, ignore_errors=True)  # the logs are kept only when something failed
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
