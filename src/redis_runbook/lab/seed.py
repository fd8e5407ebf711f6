"""`lab seed`: realistic data in the lab, written with the official Python `bullmq`
2.x package (the twin of Node BullMQ v5), so every key has the exact layout a
production fleet writes.

Queues (prefix `bull`; names use `-` because BullMQ v5 rejects `:`):
    enrich-batch   waiting, prioritized, delayed, active with a live lock, active
                   whose lock expired (a worker that died mid-job)
    outreach-send  completed and failed jobs (processed by a real Worker)
    nurturing      a paused queue holding waiting jobs (v5 layout: the `paused` list)
Plus `session:*` hashes and `ratelimit:*` counters with TTLs, and `cache:*`
strings (some with TTLs) — the categories of seed §1.2.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import redis

from redis_runbook.config import TargetConfig
from redis_runbook.errors import LabError
from redis_runbook.target import client_kwargs, make_client

LIVE_LOCK_MS = 10 * 60 * 1000  # "active with a live lock" stays live for 10 minutes
DEAD_LOCK_MS = 1  # a lock that expires at once: the worker died mid-job
DEADLINE_S = 120.0  # the whole BullMQ part; a lab seed takes ~1 s


@dataclass(frozen=True)
class SeedPlan:
    """How much to write; `scale` multiplies every count."""

    scale: int = 1

    def n(self, base: int) -> int:
        """`base` jobs or keys at this scale."""
        return base * self.scale


@dataclass
class SeedReport:
    """What the seed wrote, per queue state and per key category."""

    queues: dict[str, dict[str, int]] = field(default_factory=dict)
    keys: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def _bullmq_connection(target: TargetConfig) -> dict[str, Any]:
    """redis-py keyword arguments for bullmq's own connections (TCP lab only)."""
    kwargs = client_kwargs(target)
    handshake = kwargs["handshake"]
    if target.scheme != "redis":
        raise LabError("lab seed supports redis:// targets only", "redis-runbook lab up")
    return {
        "host": kwargs["host"],
        "port": kwargs["port"],
        "db": handshake.db,
        "username": handshake.username,
        "password": handshake.password,
        "socket_connect_timeout": target.connect_timeout,
    }


async def _enrich_batch(conn: dict[str, Any], plan: SeedPlan, report: SeedReport) -> None:
    from bullmq import Queue, Worker

    queue = Queue("enrich-batch", {"connection": conn})
    try:
        await queue.addBulk(
            [
                {
                    "name": "enrich",
                    "data": {"prospectId": i, "cui": f"RO{10000 + i}"},
                    "opts": {"jobId": f"enrich-{i}", "attempts": 3},
                }
                for i in range(plan.n(40))
            ]
        )
        for i in range(plan.n(10)):
            await queue.add(
                "enrich", {"prospectId": 1000 + i}, {"jobId": f"enrich-p{i}", "priority": 1 + i % 5}
            )
        for i in range(plan.n(10)):
            await queue.add(
                "enrich", {"prospectId": 2000 + i}, {"jobId": f"enrich-d{i}", "delay": 3_600_000}
            )
        # Manual fetching moves jobs to active with a lock, exactly as a Node worker
        # does; nothing renews these locks afterwards.
        for lock_ms, count in ((LIVE_LOCK_MS, plan.n(3)), (DEAD_LOCK_MS, plan.n(4))):
            worker = Worker(
                "enrich-batch",
                None,
                {"connection": conn, "autorun": False, "lockDuration": lock_ms},
            )
            try:
                for _ in range(count):
                    if await worker.getNextJob(uuid.uuid4().hex) is None:
                        raise LabError("lab seed: enrich-batch had no job to activate")
            finally:
                await worker.close()
        report.queues["enrich-batch"] = {
            "waiting": plan.n(40) - plan.n(7),
            "prioritized": plan.n(10),
            "delayed": plan.n(10),
            "active_locked": plan.n(3),
            "active_stale": plan.n(4),
        }
    finally:
        await queue.close()


async def _outreach_send(conn: dict[str, Any], plan: SeedPlan, report: SeedReport) -> None:
    from bullmq import Queue, Worker

    queue = Queue("outreach-send", {"connection": conn})
    done, failing = plan.n(30), plan.n(8)
    try:
        await queue.addBulk(
            [
                {
                    "name": "send",
                    "data": {"id": i, "channel": "email", "fail": i < failing},
                    "opts": {"jobId": f"outreach-{i}", "attempts": 1},
                }
                for i in range(done + failing)
            ]
        )
        # Each job is fetched and finished by hand with the worker's own scripts
        # (moveToActive, moveToFinished): a running Worker's loop, timers and
        # close() once hung a loaded test run for minutes; this has nothing to wait on.
        worker = Worker("outreach-send", None, {"connection": conn, "autorun": False})
        try:
            for _ in range(done + failing):
                token = uuid.uuid4().hex
                job = await worker.getNextJob(token)
                if job is None:
                    raise LabError("lab seed: outreach-send had no job to process")
                if job.data.get("fail"):
                    await job.moveToFailed(RuntimeError("SMTP 550: mailbox unavailable"), token)
                else:
                    await job.moveToCompleted({"sent": True}, token)
        finally:
            await worker.close()
        counts = await queue.getJobCounts("completed", "failed")
        if counts != {"completed": done, "failed": failing}:
            raise LabError(f"lab seed: outreach-send ended with {counts}")
        report.queues["outreach-send"] = {"completed": done, "failed": failing}
    finally:
        await queue.close()


async def _nurturing(conn: dict[str, Any], plan: SeedPlan, report: SeedReport) -> None:
    from bullmq import Queue

    queue = Queue("nurturing", {"connection": conn})
    try:
        await queue.addBulk(
            [
                {"name": "nurture", "data": {"leadId": i}, "opts": {"jobId": f"nurture-{i}"}}
                for i in range(plan.n(15))
            ]
        )
        await queue.pause()
        report.queues["nurturing"] = {"paused": plan.n(15)}
    finally:
        await queue.close()


def _plain_keys(client: redis.Redis, plan: SeedPlan, report: SeedReport) -> None:
    pipe = client.pipeline(transaction=False)
    for i in range(plan.n(200)):
        key = f"session:{uuid.uuid4().hex}"
        pipe.hset(key, mapping={"userId": str(i), "createdAt": str(int(time.time()))})
        pipe.expire(key, 86_400)
    for i in range(plan.n(100)):
        pipe.set(
            f"ratelimit:api:10.0.{i // 250}.{i % 250}:{int(time.time()) // 60}", i % 7, ex=3_600
        )
    for i in range(plan.n(300)):
        value = json.dumps({"company": f"SC Exemplu {i} SRL", "score": i % 100})
        pipe.set(f"cache:company:{i}", value, ex=6 * 3_600 if i % 2 else None)
    pipe.execute()
    report.keys = {"session": plan.n(200), "ratelimit": plan.n(100), "cache": plan.n(300)}


def seed(target: TargetConfig, plan: SeedPlan, force: bool = False) -> SeedReport:
    """Fill the lab. Refuses a non-empty database unless `force` (seeding twice
    would activate more jobs and muddle what each state holds)."""
    started = time.perf_counter()
    client = make_client(target)
    try:
        size = client.dbsize()
        if size and not force:
            raise LabError(
                f"the lab already holds {size} keys; seed adds to them only with --force",
                "redis-runbook lab seed --force",
            )
        report = SeedReport()
        _plain_keys(client, plan, report)
    except redis.RedisError as exc:
        raise LabError(f"lab seed: {exc}") from None
    finally:
        client.close()
    conn = _bullmq_connection(target)

    async def all_queues() -> None:
        await _enrich_batch(conn, plan, report)
        await _outreach_send(conn, plan, report)
        await _nurturing(conn, plan, report)

    try:
        asyncio.run(asyncio.wait_for(all_queues(), DEADLINE_S))
    except TimeoutError:
        raise LabError(
            f"lab seed: the BullMQ queues were not written within {DEADLINE_S:.0f} s",
            "redis-runbook health",
        ) from None
    report.seconds = time.perf_counter() - started
    return report
