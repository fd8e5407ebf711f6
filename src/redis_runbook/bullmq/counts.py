"""`queues status` (seed §5.1): per-queue counts by state, read-only, in pipelined
rounds (safe on a replica — no script, no write; bullmq's own getCounts script may
RPOP legacy markers, so it is not used).

Active jobs are split by their lock, the only evidence BullMQ has that a worker
still runs them (bullmq.md §0.2): `locked` (PTTL > 0), `stale` (no lock),
`immortal` (a lock without TTL: never recovered by BullMQ), `orphan` (the id is in
`active` but the job hash is gone)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from redis_runbook.bullmq.keys import QueueRef
from redis_runbook.bullmq.schedulers import Scheduler, list_schedulers
from redis_runbook.replies import parse_client_list

BATCH_QUEUES = 100
ID_CHUNK = 1000


@dataclass
class ActiveSplit:
    """Active job ids by the state of their lock."""

    locked: int = 0
    stale: int = 0
    immortal: int = 0
    orphan: int = 0
    max_lock_ttl_ms: int = 0

    @property
    def total(self) -> int:
        """All ids in the active list."""
        return self.locked + self.stale + self.immortal + self.orphan


@dataclass
class QueueCounts:
    """One queue's counts."""

    queue: QueueRef
    wait: int = 0
    paused_list: int = 0
    prioritized: int = 0
    delayed: int = 0
    overdue: int = 0
    waiting_children: int = 0
    completed: int = 0
    failed: int = 0
    paused: bool = False
    active: ActiveSplit = field(default_factory=ActiveSplit)
    workers: int | None = None
    last_event_ms: int | None = None
    scheduler_count: int = 0
    schedulers: list[Scheduler] = field(default_factory=list)

    @property
    def waiting(self) -> int:
        """Jobs that will run once workers take them: `wait` plus the v5 `paused` list
        (where a paused v5 queue keeps them; a v6 tool that ignores it undercounts,
        bullmq.md §9). Node's getJobCounts() splits the two: see `job_counts`."""
        return self.wait + self.paused_list

    def job_counts(self) -> dict[str, int]:
        """The figures Node BullMQ v5's `Queue.getJobCounts()` gives, under its names:
        `waiting` is the `wait` list only, `paused` the jobs a paused queue holds."""
        return {
            "active": self.active.total,
            "completed": self.completed,
            "delayed": self.delayed,
            "failed": self.failed,
            "paused": self.paused_list,
            "prioritized": self.prioritized,
            "waiting": self.wait,
            "waiting-children": self.waiting_children,
        }

    def to_json(self) -> dict[str, Any]:
        """Stable JSON (docs/json.md)."""
        return {
            "queue": self.queue.name,
            "prefix": self.queue.prefix,
            "layout": self.queue.layout,
            "paused": self.paused,
            "waiting": self.wait,
            "waiting_total": self.waiting,
            "job_counts": self.job_counts(),
            "wait": self.wait,
            "paused_list": self.paused_list,
            "prioritized": self.prioritized,
            "active": self.active.total,
            "active_split": asdict(self.active),
            "delayed": self.delayed,
            "overdue": self.overdue,
            "waiting_children": self.waiting_children,
            "completed": self.completed,
            "failed": self.failed,
            "workers": self.workers,
            "last_event_ms": self.last_event_ms,
            "scheduler_count": self.scheduler_count,
            "schedulers": [s.to_json() for s in self.schedulers],
        }


def _batches(items: Sequence[QueueRef], size: int) -> Iterator[Sequence[QueueRef]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


def _first_round(client: redis.Redis, queues: Sequence[QueueRef]) -> list[QueueCounts]:
    # Delayed scores are due_ms * 0x1000 + a sequence: due now means score < (now+1) * 4096.
    overdue_max = (int(time.time() * 1000) + 1) * 0x1000 - 1
    pipe = client.pipeline(transaction=False)
    for q in queues:
        for suffix in ("wait", "paused", "active"):
            pipe.llen(q.key(suffix))
        for suffix in ("prioritized", "delayed", "waiting-children", "completed", "failed"):
            pipe.zcard(q.key(suffix))
        pipe.zcount(q.key("delayed"), 0, overdue_max)
        pipe.hget(q.key("meta"), "paused")
        pipe.xrevrange(q.key("events"), count=1)
        pipe.zcard(q.key("repeat"))
    # An error reply (BUSY, WRONGTYPE) is raised for the caller to classify; counted
    # as a number it was a TypeError with a traceback.
    replies = pipe.execute()
    counts = []
    per = 12
    for index, q in enumerate(queues):
        r = replies[index * per : (index + 1) * per]
        events = r[10] if isinstance(r[10], list) else []
        last = None
        if events:
            raw_id = events[0][0]
            text = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            last = int(text.split("-")[0])
        counts.append(
            QueueCounts(
                queue=q,
                wait=_int(r[0]),
                paused_list=_int(r[1]),
                active=ActiveSplit(locked=_int(r[2])),  # split in the second round
                prioritized=_int(r[3]),
                delayed=_int(r[4]),
                waiting_children=_int(r[5]),
                completed=_int(r[6]),
                failed=_int(r[7]),
                overdue=_int(r[8]),
                paused=r[9] is not None and not isinstance(r[9], Exception),
                last_event_ms=last,
                scheduler_count=_int(r[11]),
            )
        )
    return counts


def active_ids(client: redis.Redis, queue: QueueRef) -> Iterator[list[str]]:
    """The ids in `active`, in chunks (LRANGE by index: a list that changes while it
    is read may yield an id twice or miss one that moved; callers re-check)."""
    start = 0
    while True:
        chunk: Any = client.lrange(queue.key("active"), start, start + ID_CHUNK - 1)
        if not chunk:
            return
        yield [c.decode() if isinstance(c, bytes) else str(c) for c in chunk]
        if len(chunk) < ID_CHUNK:
            return
        start += ID_CHUNK


def split_active(client: redis.Redis, queue: QueueRef) -> tuple[ActiveSplit, list[str]]:
    """Classify every active id by its lock; also returns the stale ids."""
    split = ActiveSplit()
    stale: list[str] = []
    for ids in active_ids(client, queue):
        pipe = client.pipeline(transaction=False)
        for job_id in ids:
            pipe.pttl(queue.lock(job_id))
            pipe.exists(queue.job(job_id))
        replies = pipe.execute()
        for i, job_id in enumerate(ids):
            ttl, exists = int(replies[2 * i]), int(replies[2 * i + 1])
            if not exists:
                split.orphan += 1
            elif ttl == -2:
                split.stale += 1
                stale.append(job_id)
            elif ttl == -1:
                split.immortal += 1
            else:
                split.locked += 1
                split.max_lock_ttl_ms = max(split.max_lock_ttl_ms, ttl)
    return split, stale


def worker_counts(
    client: redis.Redis,
    queues: Sequence[QueueRef],
    clients: list[dict[str, str]] | None = None,
) -> dict[QueueRef, int] | None:
    """Worker connections per queue from CLIENT LIST (None when it is refused);
    `clients` is a CLIENT LIST already read in this round, parsed."""
    if clients is None:
        try:
            text: Any = client.execute_command("CLIENT LIST")
        except redis.ResponseError:
            return None
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        clients = text if isinstance(text, list) else parse_client_list(str(text))
    names = [str(c.get("name", "")) for c in clients]
    result = {}
    for q in queues:
        owned = q.worker_client_names()
        result[q] = sum(1 for n in names if any(n == o or n.startswith(o + ":w:") for o in owned))
    return result


def queue_counts(
    client: redis.Redis,
    queues: Sequence[QueueRef],
    clients: list[dict[str, str]] | None = None,
    schedulers: bool = False,
) -> list[QueueCounts]:
    """Counts for every queue: one pipelined round per batch of queues, one more per
    queue with active jobs, one CLIENT LIST (unless `clients` already holds it). The
    job schedulers are always counted; with `schedulers` they are listed too (two
    more rounds, for the queues that have some: `queues status`, not every scrape)."""
    counts: list[QueueCounts] = []
    for batch in _batches(queues, BATCH_QUEUES):
        counts.extend(_first_round(client, batch))
    for c in counts:
        if c.active.locked:  # the first round put the list length here
            c.active, _ = split_active(client, c.queue)
    scheduled = [c for c in counts if c.scheduler_count and schedulers]
    listed = list_schedulers(client, [c.queue for c in scheduled])
    for c in scheduled:
        c.schedulers = listed[c.queue]
    workers = worker_counts(client, queues, clients)
    if workers is not None:
        for c in counts:
            c.workers = workers[c.queue]
    return counts
