"""`diagnose` on a down server (seed §3.1 + §3.4), side by side with the seed's own
diagnostic commands for that case, `docker compose` removed: the last 100 log
lines, `ls -la` of the data dir, `redis-check-aof` and `redis-check-rdb`."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis_runbook import lab
from redis_runbook.config import Config, load_config
from redis_runbook.diagnose.engine import diagnose
from redis_runbook.lab.faults import inject
from redis_runbook.lab.lifecycle import lab_server
from redis_runbook.lab.seed import SeedPlan, seed

SEED_DIAGNOSTIC = """
set -u
D="$1"
tail -n 100 "$D/redis.log"
ls -la "$D/data/"
redis-check-aof "$D/data/appendonlydir/appendonly.aof.manifest"
[ -f "$D/data/dump.rdb" ] && redis-check-rdb "$D/data/dump.rdb"
true
"""


def bench_diagnose(
    runs: int, machine: str, median_ms: Callable[[Callable[[], Any], int], float]
) -> None:
    """Print the diagnose table (Markdown): one fresh lab per fault."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="rr-bench-") as tmp:
        for fault in ("kill", "aof-garbage-last"):
            directory = Path(tmp) / f"lab-{fault}"
            status = lab.up(directory)
            config = load_config(status.config_path, env={}).config
            seed(config.target, SeedPlan(scale=10))
            env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_RUNBOOK_")}
            env["REDIS_RUNBOOK_CONFIG"] = str(status.config_path)
            inject(fault, lab_server(directory))
            found = diagnose(config).scenarios
            codes = ", ".join(f"{s.code} {s.cause}" for s in found)

            def seed_script(directory: Path = directory) -> None:
                subprocess.run(
                    ["bash", "-c", SEED_DIAGNOSTIC, "seed", str(directory)],
                    capture_output=True,
                    check=False,
                )

            def in_process(config: Config = config) -> None:
                diagnose(config)

            def whole(env: dict[str, str] = env) -> None:
                subprocess.run(
                    [sys.executable, "-m", "redis_runbook", "diagnose", "--json"],
                    env=env,
                    capture_output=True,
                    check=False,
                )

            rows.append(
                (
                    fault,
                    codes,
                    median_ms(seed_script, runs),
                    median_ms(in_process, runs),
                    median_ms(whole, runs),
                )
            )

    print(f"## diagnose on a down server (seed §3.1, §3.4) — {time.strftime('%Y-%m-%d')}\n")
    print(f"{machine}; lab seeded with `--scale 10`; {runs} runs, medians.\n")
    print(
        "| fault | diagnosis | seed's commands (log, ls, check-aof, check-rdb) | "
        "`diagnose()` in-process | `redis-runbook diagnose --json` |"
    )
    print("|---|---|---|---|---|")
    for fault, codes, seed_ms, inproc_ms, whole_ms in rows:
        print(f"| {fault} | {codes} | {seed_ms:.0f} ms | {inproc_ms:.0f} ms | {whole_ms:.0f} ms |")
