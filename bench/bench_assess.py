"""Assessment of many queues (seed §5.1): ours (SCAN discovery + pipelined counts,
in-process and as `redis-runbook queues status --json`) vs the seed's own script
(KEYS + one Queue and getJobCounts() per queue, in Node BullMQ v5)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from bullmq import Queue

from redis_runbook import lab
from redis_runbook.bullmq.counts import queue_counts
from redis_runbook.bullmq.discovery import discover
from redis_runbook.lab.lifecycle import lab_server

INTEROP = Path(__file__).resolve().parent.parent / "tests" / "interop"


async def _fill(port: int, queues: int, jobs: int) -> None:
    for n in range(queues):
        queue = Queue(f"q{n:04d}", {"connection": {"host": "127.0.0.1", "port": port}})
        await queue.addBulk(
            [{"name": "work", "data": {"i": i}, "opts": {"jobId": f"j-{i}"}} for i in range(jobs)]
        )
        await queue.close()


def bench_assess(queues: int, machine: str) -> None:
    """Print the assessment table (Markdown)."""
    if not (INTEROP / "node_modules").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=INTEROP, check=True)
    with tempfile.TemporaryDirectory(prefix="rr-bench-") as tmp:
        directory = Path(tmp) / "lab"
        status = lab.up(directory, maxmemory="1gb")
        assert status.port is not None
        client = redis.Redis(port=status.port)
        env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_RUNBOOK_")}
        env.update(
            REDIS_RUNBOOK_CONFIG=str(status.config_path),
            REDIS_URL=f"redis://127.0.0.1:{status.port}",
        )
        try:
            asyncio.run(_fill(status.port, queues, 5))
            client.config_resetstat()
            started = time.perf_counter()
            counts = queue_counts(client, discover(client, ["bull"]).queues)
            ours = time.perf_counter() - started
            stats: Any = client.info("commandstats")
            keys_calls = stats.get("cmdstat_keys", {}).get("calls", 0)

            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "redis_runbook", "queues", "status", "--json"],
                           env=env, capture_output=True, check=True)  # fmt: skip
            whole = time.perf_counter() - started

            client.config_resetstat()
            started = time.perf_counter()
            done = subprocess.run(["node", str(INTEROP / "seed51.js")], env=env,
                                  capture_output=True, text=True, check=True)  # fmt: skip
            seed = time.perf_counter() - started
            seed_result = json.loads(done.stdout)
            stats = client.info("commandstats")
            seed_keys = stats.get("cmdstat_keys", {}).get("calls", 0)
        finally:
            client.close()
            lab_server(directory).stop(save=False)

    print(f"## assessment of {queues:,} queues (seed §5.1) — {time.strftime('%Y-%m-%d')}\n")
    print(f"{machine}; {queues:,} queues of 5 waiting jobs each; one run.\n")
    print("| method | queues seen | wall | vs seed | KEYS calls |")
    print("|---|---|---|---|---|")
    print(f"| seed §5.1: KEYS + `getJobCounts()` per queue (Node BullMQ v5) | "
          f"{seed_result['queues']:,} | {seed:.2f} s | 1.0x | {seed_keys} |")  # fmt: skip
    print(f"| ours: `queues status --json`, whole process | {len(counts):,} | {whole:.2f} s | "
          f"{seed / whole:.1f}x | 0 |")  # fmt: skip
    print(f"| ours: discovery + counts, in-process | {len(counts):,} | {ours:.2f} s | "
          f"{seed / ours:.1f}x | {keys_calls} |")  # fmt: skip
