"""Start-up (issue 15): whole `redis-runbook` processes that do little — `--version`,
`--help`, `health --help` — and `health --json` against a throwaway redis-server on a
free loopback port, next to the interpreter's own start and `import redis` (the floor
of every command that talks to Redis). Output discarded.

Every contender runs once per round, rounds interleaved, so a load that changes during
the run weighs on all of them alike; the minimum is the figure to compare on a shared
machine (the median is shown beside it). The processes run with bytecode, as an
installed package does (pip compiles it; a source tree writes `__pycache__` on its
first run): an environment with PYTHONDONTWRITEBYTECODE=1 would otherwise compile
every redis_runbook module on every run (the last row: what that costs). The cache lives
in the benchmark's temporary directory (PYTHONPYCACHEPREFIX), never in the source tree."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from redis_runbook.lab.server import RedisServer


def _run_ms(argv: list[str], env: dict[str, str]) -> float:
    """Wall time of one run of `argv` (exit codes 0-3 are health results, not failures)."""
    started = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=False)
    return (time.perf_counter() - started) * 1000


def bench_startup(runs: int, machine: str) -> None:
    """Print the start-up table (Markdown)."""
    python = [sys.executable]
    cli = [sys.executable, "-m", "redis_runbook"]
    with tempfile.TemporaryDirectory(prefix="rr-bench-startup-") as tmp:
        server = RedisServer(Path(tmp) / "redis")
        server.start()
        try:
            config = Path(tmp) / "redis-runbook.toml"
            config.write_text(f'[target]\nurl = "{server.target().url}"\n')
            env = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith("REDIS_RUNBOOK_") and k != "PYTHONDONTWRITEBYTECODE"
            }
            env["REDIS_RUNBOOK_CONFIG"] = str(config)
            env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
            uncompiled = {k: v for k, v in env.items() if k != "PYTHONPYCACHEPREFIX"}
            uncompiled["PYTHONDONTWRITEBYTECODE"] = "1"
            contenders: list[tuple[str, list[str], dict[str, str]]] = [
                ("bare `python -c pass` (interpreter start)", [*python, "-c", "pass"], env),
                ("`python -c 'import redis'` (floor of a Redis command)",
                 [*python, "-c", "import redis"], env),
                ("`redis-runbook --version`", [*cli, "--version"], env),
                ("`redis-runbook --help`", [*cli, "--help"], env),
                ("`redis-runbook health --help`", [*cli, "health", "--help"], env),
                ("`redis-runbook health --json` (live server)", [*cli, "health", "--json"], env),
                ("`redis-runbook health --json`, redis_runbook compiled every run",
                 [*cli, "health", "--json"], uncompiled),
            ]  # fmt: skip
            for _, argv, run_env in contenders:  # warm-up: writes the bytecode
                _run_ms(argv, run_env)
            samples: list[list[float]] = [[] for _ in contenders]
            for _ in range(runs):
                for index, (_, argv, run_env) in enumerate(contenders):
                    samples[index].append(_run_ms(argv, run_env))
        finally:
            server.stop(save=False)

    print(f"## Start-up (issue 15) — {time.strftime('%Y-%m-%d')}\n")
    print(
        f"{machine}; {runs} interleaved rounds after one warm-up, whole processes with "
        f"bytecode; load average {os.getloadavg()[0]:.2f} at the end.\n"
    )
    print("| process | min | median |")
    print("|---|---|---|")
    for (what, _, _), times in zip(contenders, samples, strict=True):
        print(f"| {what} | {min(times):.1f} ms | {statistics.median(times):.1f} ms |")
