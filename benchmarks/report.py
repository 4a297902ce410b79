"""benchmarks/results/latest.{json,md,png} from one `just bench` run."""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import shutil
import subprocess
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.bench import APPS, RESULTS, SCENARIOS, Config

PEERLESS_NOTE = "no ceiling/peer equivalent (measured for ours only)"


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = 0
    try:
        import psutil

        memory = round(psutil.virtual_memory().total / 2**30)
    except ImportError:  # pragma: no cover
        pass
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)  # noqa: S607
    return {
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "memory_gib": memory,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "wrk": " ".join(((wrk.stdout or wrk.stderr).splitlines() or [""])[0].split()[:2]),
        "code": code_version(),
        "event_loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        "http_parser": "httptools" if importlib.util.find_spec("httptools") else "h11",
        # Other work on the machine skews absolute numbers (interleaved rounds share the skew).
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }


def code_version() -> str:
    """The commit measured, and whether todo_api/ had uncommitted changes."""
    git = shutil.which("git")
    if git is None:
        return "unknown"
    head = subprocess.run(  # noqa: S603 - git, fixed arguments
        [git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(  # noqa: S603
        [git, "status", "--porcelain", "--", "todo_api"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"{head}{' + uncommitted changes in todo_api/' if dirty else ''}"


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


def build(outcome: dict[str, Any], config: Config, quick: bool, seconds: float) -> dict[str, Any]:
    results = outcome["results"]
    scenarios = []
    for scenario in SCENARIOS:
        by_app = results[scenario.name]
        ours = by_app["ours"]
        entry: dict[str, Any] = {
            "scenario": scenario.name,
            "title": scenario.title,
            "connections": by_app["connections"],
            "ours_rps": round(ours["rps"], 1),
            "ceiling_rps": round(by_app["ceiling"]["rps"], 1) if "ceiling" in by_app else None,
            "peer_rps": round(by_app["peer"]["rps"], 1) if "peer" in by_app else None,
            "p50_ms": round(ours["p50_ms"], 2),
            "p95_ms": round(ours["p95_ms"], 2),
            "p99_ms": round(ours["p99_ms"], 2),
            "rss_mb": round(ours["rss_mb"], 1),
            "ours_vs_ceiling": ratio(ours["rps"], by_app.get("ceiling", {}).get("rps", 0)),
            "ours_vs_peer": ratio(ours["rps"], by_app.get("peer", {}).get("rps", 0)),
            "errors": {app: by_app[app]["errors"] for app in APPS if app in by_app},
            "apps": {
                app: {
                    k: (round(v, 2) if isinstance(v, float) else v) for k, v in by_app[app].items()
                }
                for app in APPS
                if app in by_app
            },
        }
        scenarios.append(entry)
    storm = outcome["storm"]
    scenarios.append(
        {
            "scenario": "login_storm",
            "title": "List during a 20-login storm (fixed rate)",
            "connections": None,
            "ours_rps": round(storm["list_rate"], 1),
            "ceiling_rps": None,
            "peer_rps": None,
            "p50_ms": round(storm["storm_p50_ms"], 2),
            "p99_ms": round(storm["storm_p99_ms"], 2),
            "rss_mb": round(results["login"]["ours"]["rss_mb"], 1),
            "note": PEERLESS_NOTE,
            "detail": {k: (round(v, 2) if isinstance(v, float) else v) for k, v in storm.items()},
        }
    )
    fixed = outcome["fixed"]
    scenarios.append(
        {
            "scenario": "mixed_fixed_rate",
            "title": "Mixed at half of each server's saturation (fixed rate)",
            "connections": None,
            "ours_rps": round(fixed["ours"]["rate"], 1),
            "ceiling_rps": round(fixed["ceiling"]["rate"], 1),
            "peer_rps": round(fixed["peer"]["rate"], 1),
            "p50_ms": round(fixed["ours"]["p50_ms"], 2),
            "p99_ms": round(fixed["ours"]["p99_ms"], 2),
            "rss_mb": round(results["mixed"]["ours"]["rss_mb"], 1),
            "apps": {
                app: {
                    k: (round(v, 2) if isinstance(v, float) else v) for k, v in fixed[app].items()
                }
                for app in APPS
            },
        }
    )
    bound = outcome["cores"] / outcome["argon2_seconds"]
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_1m_at_start": outcome["load_at_start"],
        "mode": "quick" if quick else "full",
        "run_seconds": round(seconds),
        "machine": machine(),
        "config": {
            "users": config.users,
            "todos_per_user": config.todos_per_user,
            "big_user_todos": config.big_todos,
            "seed_seconds": round(outcome["seed_seconds"], 1),
            "wrk_seconds": config.duration,
            "warmup_seconds": config.warmup,
            "rounds": config.rounds,
            "connections": config.connections,
            "mixed_connections": config.mixed_connections,
            "login_connections": config.login_connections,
            "login_wrk_seconds": config.login_seconds,
            "workers_per_server": config.workers,
            "db_pool_max": 10,
        },
        "argon2_ms_per_hash": round(outcome["argon2_seconds"] * 1000, 1),
        "login_bound_rps": round(bound, 1),
        "argon2_measured_parallel_per_s": round(outcome["argon2_parallel_per_s"], 1),
        "equivalence_checks": outcome["checked"],
        "scenarios": scenarios,
        "targets": targets(outcome, bound),
    }


def targets(outcome: dict[str, Any], bound: float) -> list[dict[str, Any]]:
    results, fixed, storm = outcome["results"], outcome["fixed"], outcome["storm"]
    rows: list[dict[str, Any]] = []

    def add(what: str, measured: str, holds: bool) -> None:
        rows.append({"target": what, "measured": measured, "holds": holds})

    for name in ("list", "create", "update", "sync"):
        r = results[name]
        vs_ceiling = r["ours"]["rps"] / r["ceiling"]["rps"]
        vs_peer = r["ours"]["rps"] / r["peer"]["rps"]
        add(f"{name}: ours >= 0.75x ceiling", f"{vs_ceiling:.2f}x", vs_ceiling >= 0.75)
        add(f"{name}: ours >= 2.5x peer", f"{vs_peer:.2f}x", vs_peer >= 2.5)
    r = results["refresh"]
    value = r["ours"]["rps"] / r["ceiling"]["rps"]
    add("refresh: ours >= 0.6x ceiling", f"{value:.2f}x", value >= 0.6)
    login = results["login"]["ours"]["rps"]
    add(
        "login >= 0.9x argon2 bound (cores / s per hash)",
        f"{login:.1f}/s = {login / bound:.2f}x of {bound:.1f}/s",
        login / bound >= 0.9,
    )
    measured = outcome["argon2_parallel_per_s"]
    add(
        "(same, against the hashes/s one thread per core really gets here)",
        f"{login:.1f}/s = {login / measured:.2f}x of {measured:.1f}/s",
        login / measured >= 0.9,
    )
    add(
        "list p99 during 20-login storm <= 1.5x without",
        f"{storm['idle_p99_ms']:.1f} -> {storm['storm_p99_ms']:.1f} ms = {storm['ratio_p99']:.2f}x",
        storm["ratio_p99"] <= 1.5,
    )
    first = results["list"]["ours"]["p50_ms"]
    for name, label in (("deep", "deep page"), ("big", "100k user"), ("big_deep", "100k deep")):
        value = results[name]["ours"]["p50_ms"] / first
        add(f"{label} p50 within 1.2x of first page p50", f"{value:.2f}x", value <= 1.2)
    mixed = results["mixed"]["ours"]
    add(
        f"mixed, {results['mixed']['connections']} clients: p95 < 200 ms, 0 errors",
        f"p95 {mixed['p95_ms']:.1f} ms, {mixed['errors']} errors",
        mixed["p95_ms"] < 200 and mixed["errors"] == 0,
    )
    f = fixed["ours"]
    add(
        "mixed at half saturation (fixed rate): p99 < 25 ms",
        f"{f['rate']:.0f}/s: p99 {f['p99_ms']:.1f} ms (without logins {f['p99_no_login_ms']:.1f} ms), "
        f"{f['errors']} errors",
        f["p99_ms"] < 25 and f["errors"] == 0,
    )
    rss = max(results[s.name]["ours"]["rss_mb"] for s in SCENARIOS)
    add("peak RSS per worker < 150 MB", f"{rss:.0f} MB", rss < 150)
    return rows


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def markdown(data: dict[str, Any]) -> str:
    m, c = data["machine"], data["config"]
    lines = [
        f"# `just bench` ({data['mode']} run, {data['generated_at']})",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}, "
        f"Python {m['python']}, {m['wrk']}. Code: {m['code']}; all three servers run under "
        f"uvicorn with {m['event_loop']} and {m['http_parser']}. Everything on loopback: the load generator, "
        "PostgreSQL and the server under test share these cores "
        f"(1-minute load average when the run ended: {m['load_average_1m_at_end']}; "
        f"{data['load_average_1m_at_start']} when it started).",
        "",
        f"Data: {c['users']:,} users x {c['todos_per_user']:,} to-dos + 1 user x "
        f"{c['big_user_todos']:,} (seeded in SQL in {c['seed_seconds']} s). Each server: uvicorn, "
        f"{c['workers_per_server']} worker, pool of {c['db_pool_max']}, production argon2 "
        f"({data['argon2_ms_per_hash']} ms a hash here), APP_ENV=prod, JSON request log on; "
        "rate limits raised to 1,000,000/minute so they never answer 429 (the limiter still runs). "
        f"wrk: {c['connections']} connections ({c['mixed_connections']} for mixed), "
        f"{c['warmup_seconds']} s warm-up, then {c['rounds']} interleaved rounds of "
        f"{c['wrk_seconds']} s (ours, ceiling, peer, ours, ...); medians.",
        "",
        "| Scenario | ours req/s | ceiling req/s | peer req/s | ours/ceiling | ours/peer "
        "| ours p50 / p99 ms | ceiling p50 / p99 | peer p50 / p99 | CPU µs/req ours / ceiling / peer "
        "| DB CPU µs/req ours / ceiling / peer | ours RSS MB | errors | other load (cores) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in data["scenarios"]:
        apps = s.get("apps", {})

        def lat(app: str, s: dict[str, Any] = s, apps: dict[str, Any] = apps) -> str:
            if app not in apps:
                return "n/a"
            return f"{apps[app]['p50_ms']:.1f} / {apps[app]['p99_ms']:.1f}"

        if s["scenario"] == "login_storm":
            d = s["detail"]
            lines.append(
                f"| {s['title']} | {fmt(s['ours_rps'])} (fixed) | n/a | n/a | n/a | n/a "
                f"| {d['storm_p50_ms']:.1f} / {d['storm_p99_ms']:.1f} (alone: "
                f"{d['idle_p50_ms']:.1f} / {d['idle_p99_ms']:.1f}) | n/a | n/a | n/a | n/a "
                f"| {fmt(s['rss_mb'])} | {d['errors']} | n/a |"
            )
            continue
        if s["scenario"] == "mixed_fixed_rate":
            errors = "/".join(str(apps[a]["errors"]) for a in APPS)

            def lat(app: str, apps: dict[str, Any] = apps) -> str:
                a = apps[app]
                return (
                    f"{a['p50_ms']:.1f} / {a['p99_ms']:.1f} "
                    f"(no logins: p99 {a['p99_no_login_ms']:.1f})"
                )

            lines.append(
                f"| {s['title']} | {fmt(s['ours_rps'])} (fixed) | {fmt(s['ceiling_rps'])} (fixed) "
                f"| {fmt(s['peer_rps'])} (fixed) | n/a | n/a | {lat('ours')} | {lat('ceiling')} "
                f"| {lat('peer')} | n/a | n/a | {fmt(s['rss_mb'])} | {errors} | n/a |"
            )
            continue
        cpu = " / ".join(fmt(apps[a]["cpu_us"]) if a in apps else "n/a" for a in APPS)
        db_cpu = " / ".join(fmt(apps[a]["db_cpu_us"]) if a in apps else "n/a" for a in APPS)
        foreign = " / ".join(f"{apps[a]['foreign_cores']:.2f}" for a in APPS if a in apps)
        errors = "/".join(str(s["errors"].get(a, "-")) for a in APPS)
        lines.append(
            f"| {s['title']} | {fmt(s['ours_rps'])} | {fmt(s['ceiling_rps'])} "
            f"| {fmt(s['peer_rps'])} | {fmt(s['ours_vs_ceiling'], 2)} | {fmt(s['ours_vs_peer'], 2)} "
            f"| {lat('ours')} | {lat('ceiling')} | {lat('peer')} | {cpu} | {db_cpu} "
            f"| {fmt(s['rss_mb'])} "
            f"| {errors} | {foreign} |"
        )
    lines += [
        "",
        "Errors are ours/ceiling/peer (wrk: connect, read, write, timeout and non-2xx/3xx). "
        "Other load: CPU (in cores, median per round, ours / ceiling / peer) used during the "
        "runs by processes that are not part of the benchmark; above ~0.2 the figures of that "
        "row are depressed and noisier. "
        "The login storm has no ceiling or peer equivalent: it is ours only (list at a fixed "
        "rate with 20 logins always in flight vs alone). Mixed at a fixed rate runs each server at "
        "half of its own mixed saturation (asyncio generator, latency from the scheduled send "
        "time); its p99 includes the 1% of requests that are logins (an argon2 hash each).",
        "",
        f"Login bound: {data['machine']['cores']} cores / {data['argon2_ms_per_hash']} ms a hash "
        f"= {data['login_bound_rps']} logins/s nominal; {data['machine']['cores']} threads hashing "
        f"at once in one process measure {data['argon2_measured_parallel_per_s']} hashes/s here "
        "(argon2id with 64 MiB is memory-bound: two hashes do not run twice as fast). Login runs "
        f"use {data['config']['login_connections']} connections and "
        f"{data['config']['login_wrk_seconds']} s rounds.",
        "",
        "## Targets (issue 6)",
        "",
        "| Target | Measured | Holds |",
        "|---|---|---|",
    ]
    for row in data["targets"]:
        lines.append(f"| {row['target']} | {row['measured']} | {'yes' if row['holds'] else 'no'} |")
    lines += [
        "",
        "Bodies checked equivalent across the three before timing: "
        + "; ".join(data["equivalence_checks"])
        + ".",
        "",
        "![requests per second and CPU per request](latest.png)",
        "",
    ]
    return "\n".join(lines)


def chart(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [s for s in data["scenarios"] if s.get("apps") and "cpu_us" in s["apps"]["ours"]]
    names = [textwrap.fill(s["title"], 18) for s in rows]
    colours = {"ours": "#2b6cb0", "ceiling": "#9ca3af", "peer": "#dd6b20"}
    fig, axes = plt.subplots(2, 1, figsize=(14, 9), constrained_layout=True)
    width = 0.27
    for panel, (key, label) in enumerate(
        (("rps", "requests/s (log)"), ("cpu_us", "server CPU µs per request (log)"))
    ):
        ax = axes[panel]
        for k, app in enumerate(APPS):
            values = [s["apps"].get(app, {}).get(key, 0) for s in rows]
            xs = [i + (k - 1) * width for i in range(len(rows))]
            bars = ax.bar(xs, values, width, label=app, color=colours[app])
            for bar, value in zip(bars, values, strict=True):
                if value:
                    ax.annotate(
                        f"{value:,.0f}",
                        (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center",
                        va="bottom",
                        fontsize=6,
                    )
        ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.set_xticks(range(len(rows)), names, fontsize=7)
        ax.grid(axis="y", alpha=0.3)
        ax.legend()
    m = data["machine"]
    fig.suptitle(
        f"todo-api: ours vs bare-ASGI ceiling vs FastAPI+SQLAlchemy peer "
        f"({m['cores']} cores, {data['mode']} run, {data['generated_at'][:10]})"
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_all(
    outcome: dict[str, Any], config: Config, quick: bool, seconds: float
) -> dict[str, Path]:
    RESULTS.mkdir(exist_ok=True)
    data = build(outcome, config, quick, seconds)
    paths = {
        "json": RESULTS / "latest.json",
        "md": RESULTS / "latest.md",
        "png": RESULTS / "latest.png",
    }
    paths["json"].write_text(json.dumps(data, indent=2) + "\n")
    paths["md"].write_text(markdown(data))
    chart(data, paths["png"])
    return paths
