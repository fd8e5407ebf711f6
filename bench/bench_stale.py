"""Stale recovery of many active jobs (seed §5.2): ours (a survey of active, then our
Lua walking it from the tail in calls of 500 ids) vs BullMQ's own stalled-check
script (the best correct alternative: it needs two calls, marks then moves,
processes the whole active list in one script call and raises every job's stalled
counter). The seed's own moveToFailed + retry moves 0 jobs
(tests/node_interop/test_interop_seed52.py keeps the proof)."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from bullmq import Queue

from redis_runbook import lab
from redis_runbook.bullmq.keys import QueueRef
from redis_runbook.bullmq.stale import recover_pass, survey
from redis_runbook.lab.lifecycle import lab_server

QUEUE = "bench-stale"
# Workers that fetched every job and died: ids moved wait -> active, no lock left.
ACTIVATE = """
local n = 0
while n < tonumber(ARGV[1]) do
  if not redis.call('RPOPLPUSH', KEYS[1], KEYS[2]) then break end
  n = n + 1
end
return n
"""


async def _add(port: int, jobs: int) -> None:
    queue = Queue(QUEUE, {"connection": {"host": "127.0.0.1", "port": port}})
    for start in range(0, jobs, 1000):
        await queue.addBulk(
            [
                {"name": "work", "data": {"n": i}, "opts": {"jobId": f"j-{i}"}}
                for i in range(start, min(jobs, start + 1000))
            ]
        )
    await queue.close()


def _activate(client: redis.Redis, jobs: int) -> None:
    moved = 0
    while moved < jobs:
        reply: Any = client.eval(ACTIVATE, 2, f"bull:{QUEUE}:wait", f"bull:{QUEUE}:active", 10_000)
        if int(reply) == 0:
            break
        moved += int(reply)
    client.delete(f"bull:{QUEUE}:stalled", f"bull:{QUEUE}:stalled-check")


async def _bullmq_path(port: int) -> tuple[float, float]:
    """BullMQ's moveStalledJobsToWait twice; returns (total s, longest call ms)."""
    queue = Queue(QUEUE, {"connection": {"host": "127.0.0.1", "port": port}})
    longest = 0.0
    started = time.perf_counter()
    for _ in range(2):
        call = time.perf_counter()
        await queue.scripts.moveStalledJobsToWait(10**9, 1)
        longest = max(longest, (time.perf_counter() - call) * 1000)
        await asyncio.sleep(0.005)  # let the 1 ms stalled-check throttle expire
    total = time.perf_counter() - started
    await queue.close()
    return total, longest


def bench_stale(jobs: int, machine: str) -> None:
    """Print the stale-recovery table (Markdown)."""
    with tempfile.TemporaryDirectory(prefix="rr-bench-") as tmp:
        directory = Path(tmp) / "lab"
        status = lab.up(directory, maxmemory="2gb")
        assert status.port is not None
        client = redis.Redis(port=status.port)
        try:
            asyncio.run(_add(status.port, jobs))
            ref = QueueRef("bull", QUEUE)

            _activate(client, jobs)
            started = time.perf_counter()
            assert len(survey(client, ref).stale) == jobs
            result = recover_pass(client, ref)
            ours = time.perf_counter() - started
            assert result.moved == jobs, result

            _activate(client, jobs)
            theirs, longest = asyncio.run(_bullmq_path(status.port))
            moved_by_bullmq = int(client.llen(f"bull:{QUEUE}:wait"))  # type: ignore[arg-type]
        finally:
            client.close()
            lab_server(directory).stop(save=False)

    print(f"## stale recovery, {jobs:,} active jobs (seed §5.2) — {time.strftime('%Y-%m-%d')}\n")
    print(f"{machine}; every job in `active` with its lock gone (workers died); one run.\n")
    print("| method | moved | wall | jobs/s | longest Redis block |")
    print("|---|---|---|---|---|")
    print("| seed §5.2: `moveToFailed` + `retry` per job | 0 | - | 0 | - |")
    print(
        f"| BullMQ's `moveStalledJobsToWait` (×2: mark, then move; stc raised) | "
        f"{moved_by_bullmq:,} | {theirs:.2f} s | {moved_by_bullmq / theirs:,.0f} | "
        f"{longest:.0f} ms (one script call) |"
    )
    print(
        f"| ours: `queues recover-stale` core (survey + Lua, {result.calls} calls) | "
        f"{result.moved:,} | {ours:.2f} s | {result.moved / ours:,.0f} | "
        f"{result.max_call_ms:.1f} ms (one call) |"
    )
