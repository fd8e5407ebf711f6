"""Retrying many failed jobs (issue 16): `queues retry-failed`'s core (read the failed
set in pages, then our Lua in calls of at most 200 jobs / 8 ms) vs BullMQ's own ways:
`Queue.retryJobs()` (moveJobsToWait-8.lua, 1000 jobs per call, every failed job,
no choice by reason, priority and lifo ignored) and `job.retry()` per job
(reprocessJob-8.lua, one round trip each; timed on the first `--failed-per-job` jobs).
The longest Redis block is Redis' own figure: SLOWLOG with every script call logged."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from bullmq import Job, Queue

from redis_runbook import lab
from redis_runbook.bullmq.failed import read_failed, retry
from redis_runbook.bullmq.keys import QueueRef
from redis_runbook.lab.lifecycle import lab_server

QUEUE = "bench-failed"
REASON = "Connection is closed."
# Workers that took every job and failed it: wait -> failed, as moveToFinished leaves it.
FAIL = """
local n = 0
local t = tonumber(ARGV[2])
while n < tonumber(ARGV[1]) do
  local id = redis.call('RPOP', KEYS[1])
  if not id then break end
  n = n + 1
  local key = ARGV[3] .. id
  redis.call('HSET', key, 'failedReason', ARGV[4], 'finishedOn', t + n, 'processedOn', t + n,
             'atm', 1, 'ats', 1)
  redis.call('ZADD', KEYS[2], t + n, id)
end
return n
"""


async def _add(port: int, jobs: int) -> None:
    queue = Queue(QUEUE, {"connection": {"host": "127.0.0.1", "port": port}})
    for start in range(0, jobs, 1000):
        await queue.addBulk([
            {"name": "send", "data": {"n": i}, "opts": {"jobId": f"j-{i}"}}
            for i in range(start, min(jobs, start + 1000))
        ])  # fmt: skip
    await queue.close()


def _fail_all(client: redis.Redis) -> None:
    base = int(time.time() * 1000) - 10**9  # in the past: retryJobs takes up to now
    while True:
        keys = [f"bull:{QUEUE}:wait", f"bull:{QUEUE}:failed"]
        reply: Any = client.eval(FAIL, 2, *keys, 10_000, base, f"bull:{QUEUE}:", REASON)
        if int(reply) == 0:
            return
        base += int(reply)


def _longest_script_ms(client: redis.Redis) -> float:
    """The longest EVAL/EVALSHA in the slow log (every command is logged), ms."""
    entries: Any = client.slowlog_get(1_000_000)
    durations = [
        int(e["duration"]) for e in entries
        if (e["command"].decode() if isinstance(e["command"], bytes) else str(e["command"]))
        .upper().startswith("EVAL")
    ]  # fmt: skip
    return max(durations, default=0) / 1000


def _watch_slowlog(client: redis.Redis) -> None:
    client.config_set("slowlog-log-slower-than", 0)
    client.config_set("slowlog-max-len", 1_000_000)
    client.slowlog_reset()


async def _retry_jobs(port: int) -> float:
    queue = Queue(QUEUE, {"connection": {"host": "127.0.0.1", "port": port}})
    started = time.perf_counter()
    await queue.retryJobs({"count": 1000, "state": "failed"})
    took = time.perf_counter() - started
    await queue.close()
    return took


async def _retry_each(port: int, ids: list[str]) -> float:
    queue = Queue(QUEUE, {"connection": {"host": "127.0.0.1", "port": port}})
    started = time.perf_counter()
    for job_id in ids:
        job = await Job.fromId(queue, job_id)
        await job.retry("failed")
    took = time.perf_counter() - started
    await queue.close()
    return took


def _reset(client: redis.Redis) -> None:
    """Every job back to failed (from wait, where each path puts them)."""
    client.delete(f"bull:{QUEUE}:failed", f"bull:{QUEUE}:events", f"bull:{QUEUE}:marker")
    _fail_all(client)


def bench_failed(jobs: int, per_job: int, machine: str) -> None:
    """Print the retry-failed table (Markdown)."""
    with tempfile.TemporaryDirectory(prefix="rr-bench-") as tmp:
        directory = Path(tmp) / "lab"
        status = lab.up(directory, maxmemory="2gb")
        assert status.port is not None
        client = redis.Redis(port=status.port)
        try:
            asyncio.run(_add(status.port, jobs))
            ref = QueueRef("bull", QUEUE)
            _fail_all(client)

            _watch_slowlog(client)
            started = time.perf_counter()
            chosen = read_failed(client, ref)
            result = retry(client, ref, chosen)
            ours = time.perf_counter() - started
            ours_block = _longest_script_ms(client)
            assert result.moved == jobs, result

            _reset(client)
            client.slowlog_reset()
            theirs = asyncio.run(_retry_jobs(status.port))
            theirs_block = _longest_script_ms(client)
            moved_by_bullmq = int(client.llen(f"bull:{QUEUE}:wait"))  # type: ignore[arg-type]

            _reset(client)
            client.slowlog_reset()
            each_ids = [f"j-{i}" for i in range(per_job)]
            each = asyncio.run(_retry_each(status.port, each_ids))
            each_block = _longest_script_ms(client)
        finally:
            client.close()
            lab_server(directory).stop(save=False)

    print(f"## retry-failed, {jobs:,} failed jobs (issue 16) — {time.strftime('%Y-%m-%d')}\n")
    print(f"{machine}; every job failed with one reason; one run each on the same data;")
    print("longest Redis block: the longest script call in Redis' SLOWLOG.\n")
    print("| method | moved | wall | jobs/s | longest Redis block |")
    print("|---|---|---|---|---|")
    print(
        f"| BullMQ's `Queue.retryJobs()` (1000 per call; all failed jobs, no choice by reason, "
        f"priority ignored) | {moved_by_bullmq:,} | {theirs:.2f} s | "
        f"{moved_by_bullmq / theirs:,.0f} | {theirs_block:.1f} ms |"
    )
    print(
        f"| BullMQ's `job.retry()` per job (first {per_job:,} jobs) | {per_job:,} | "
        f"{each:.2f} s | {per_job / each:,.0f} | {each_block:.1f} ms |"
    )
    print(
        f"| ours: `queues retry-failed` core (paged read + Lua, {result.calls} calls) | "
        f"{result.moved:,} | {ours:.2f} s | {result.moved / ours:,.0f} | {ours_block:.1f} ms |"
    )
