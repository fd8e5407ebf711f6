"""`workers verify` (seed §5.4): are workers really consuming? A connected worker is
no proof (bullmq#4479: a worker can stay connected and stop consuming), so:

- passive evidence, two samples `sample_s` apart: worker connections, lock TTLs
  going *up* (a live worker renews its locks), completions/events advancing;
- an active round trip: a canary job added LIFO with attempts 1 and
  removeOnComplete/Fail, watched on the queue's events stream until a worker
  completes (or fails) it, removed again on timeout. Workers' processors must
  return at once for the canary's job name (bullmq.md §11.4).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import redis

from redis_runbook.bullmq.aioclient import async_client
from redis_runbook.bullmq.counts import QueueCounts, active_ids, queue_counts
from redis_runbook.bullmq.keys import QueueRef
from redis_runbook.config import TargetConfig

Verdict = Literal["processing", "idle-with-workers", "no-workers", "wedged", "cannot-verify"]
CANARY_JOB = "__runbook_canary__"
LOCK_SAMPLE = 50


@dataclass
class QueueVerdict:
    """What was seen for one queue and what it means."""

    queue: QueueRef
    verdict: Verdict
    workers: int | None
    evidence: list[str] = field(default_factory=list)
    canary_ms: float | None = None

    def to_json(self) -> dict[str, Any]:
        """Stable JSON (docs/json.md)."""
        return {
            "queue": self.queue.name,
            "prefix": self.queue.prefix,
            "verdict": self.verdict,
            "workers": self.workers,
            "canary_ms": None if self.canary_ms is None else round(self.canary_ms, 1),
            "evidence": self.evidence,
        }


@dataclass
class _Sample:
    counts: QueueCounts
    lock_ttls: dict[str, int]
    completed_top: float | None


def _sample(client: redis.Redis, queues: Sequence[QueueRef]) -> dict[QueueRef, _Sample]:
    samples = {}
    for counts in queue_counts(client, queues):
        q = counts.queue
        ids = next(iter(active_ids(client, q)), [])[:LOCK_SAMPLE]
        pipe = client.pipeline(transaction=False)
        for job_id in ids:
            pipe.pttl(q.lock(job_id))
        pipe.zrevrange(q.key("completed"), 0, 0, withscores=True)
        replies = pipe.execute()
        top = replies[-1]
        samples[q] = _Sample(
            counts,
            {i: int(t) for i, t in zip(ids, replies[:-1], strict=True) if int(t) > 0},
            float(top[0][1]) if top else None,
        )
    return samples


def passive(
    client: redis.Redis, queues: Sequence[QueueRef], sample_s: float
) -> dict[QueueRef, QueueVerdict]:
    """Two samples `sample_s` apart; a verdict from what moved between them."""
    first = _sample(client, queues)
    time.sleep(sample_s)  # a measurement interval, not a wait for a condition
    second = _sample(client, queues)
    verdicts = {}
    for q in queues:
        a, b = first[q], second[q]
        workers = b.counts.workers
        renewed = [i for i, ttl in b.lock_ttls.items() if ttl > a.lock_ttls.get(i, ttl)]
        advanced = (b.completed_top or 0) > (a.completed_top or 0) or (
            (b.counts.last_event_ms or 0) > (a.counts.last_event_ms or 0)
        )
        evidence = [
            f"{'n/a' if workers is None else workers} worker connection(s)",
            f"{len(renewed)} of {len(b.lock_ttls)} sampled lock(s) renewed in {sample_s:g} s",
            "completions or events advanced" if advanced else "no new completion or event",
        ]
        backlog = b.counts.waiting + b.counts.prioritized + b.counts.overdue
        if b.counts.paused:
            verdict: Verdict = "cannot-verify"
            evidence.append("the queue is paused")
        elif renewed or advanced:
            verdict = "processing"
        elif workers == 0:
            verdict = "no-workers"
        elif backlog:
            verdict = "wedged"
            evidence.append(f"{backlog} job(s) ready and nothing moved")
        else:
            verdict = "idle-with-workers"
        verdicts[q] = QueueVerdict(q, verdict, workers, evidence)
    return verdicts


async def _canary(
    target: TargetConfig, queue: QueueRef, job_name: str, timeout_s: float
) -> float | None:
    """Add the canary, watch the events stream for its end; ms, or None on timeout
    (the canary is then removed)."""
    from bullmq import Queue  # imported here: only canaries need it (a slow import)

    client = async_client(target)
    bull = Queue(queue.name, {"connection": client, "prefix": queue.prefix})
    job_id = f"canary-{uuid.uuid4().hex}"
    try:
        last = await client.xrevrange(queue.key("events"), count=1)
        cursor = last[0][0] if last else "0-0"
        started = time.perf_counter()
        await bull.add(
            job_name,
            {"canary": True, "at": int(time.time() * 1000)},
            {"jobId": job_id, "lifo": True, "attempts": 1, "removeOnComplete": True,
             "removeOnFail": True},
        )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            reply = await client.xread({queue.key("events"): cursor}, count=100,
                                       block=max(1, int(min(left, 1.0) * 1000)))  # fmt: skip
            for _stream, entries in reply or []:
                for entry_id, fields in entries:
                    cursor = entry_id
                    if fields.get("jobId") == job_id and fields.get("event") in (
                        "completed",
                        "failed",
                    ):
                        return (time.perf_counter() - started) * 1000
        await bull.remove(job_id)
        return None
    finally:
        await bull.close()
        await client.aclose()


def canary(target: TargetConfig, queue: QueueRef, job_name: str, timeout_s: float) -> float | None:
    """The canary round trip for one queue (see `_canary`)."""
    return asyncio.run(_canary(target, queue, job_name, timeout_s))


def verify(
    client: redis.Redis,
    target: TargetConfig,
    queues: Sequence[QueueRef],
    *,
    sample_s: float = 2.0,
    use_canary: bool = True,
    job_name: str = CANARY_JOB,
    timeout_s: float = 30.0,
) -> list[QueueVerdict]:
    """Passive evidence for every queue, then (unless disabled) a canary in each
    queue that is not paused: the canary's fate decides the verdict."""
    verdicts = passive(client, queues, sample_s)
    for q in queues:
        v = verdicts[q]
        if not use_canary or v.verdict == "cannot-verify":
            continue
        ms = canary(target, q, job_name, timeout_s)
        if ms is not None:
            v.verdict, v.canary_ms = "processing", ms
            v.evidence.append(f"canary {job_name} done in {ms:.0f} ms")
        else:
            v.verdict = "wedged" if v.workers else "no-workers"
            v.evidence.append(f"canary not picked up within {timeout_s:g} s (removed)")
    return [verdicts[q] for q in queues]
