"""Start-up (issue 15): whole `redis-runbook` processes that do little — `--version`,
`--help`, `health --help` — and `health --json` against a throwaway redis-server on a
free loopback port, next to the interpreter's own start and `import redis` (the floor
of every command that talks to Redis). Medians of whole processes, output discarded."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis_runbook.lab.server import RedisServer

MedianMs = Callable[[Callable[[], Any], int], float]


def _process(argv: list[str], env: dict[str, str]) -> Callable[[], None]:
    """A run of `argv` (exit codes 0-3 are health results, not failures)."""

    def run() -> None:
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=False)

    return run


def bench_startup(runs: int, machine: str, median_ms: MedianMs) -> None:
    """Print the start-up table (Markdown)."""
    python = [sys.executable]
    cli = [sys.executable, "-m", "redis_runbook"]
    with tempfile.TemporaryDirectory(prefix="rr-bench-startup-") as tmp:
        server = RedisServer(Path(tmp) / "redis")
        server.start()
        try:
            config = Path(tmp) / "redis-runbook.toml"
            config.write_text(f'[target]\nurl = "{server.target().url}"\n')
            env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_RUNBOOK_")}
            env["REDIS_RUNBOOK_CONFIG"] = str(config)
            contenders = [
                ("bare `python -c pass` (interpreter start)", [*python, "-c", "pass"]),
                ("`python -c 'import redis'` (floor of a Redis command)",
                 [*python, "-c", "import redis"]),
                ("`redis-runbook --version`", [*cli, "--version"]),
                ("`redis-runbook --help`", [*cli, "--help"]),
                ("`redis-runbook health --help`", [*cli, "health", "--help"]),
                ("`redis-runbook health --json` (live server)", [*cli, "health", "--json"]),
            ]  # fmt: skip
            rows = [(what, median_ms(_process(argv, env), runs)) for what, argv in contenders]
        finally:
            server.stop(save=False)

    print(f"## Start-up (issue 15) — {time.strftime('%Y-%m-%d')}\n")
    print(f"{machine}; {runs} runs each after one warm-up, medians of whole processes.\n")
    print("| process | median |")
    print("|---|---|")
    for what, ms in rows:
        print(f"| {what} | {ms:.1f} ms |")
