"""`workers verify` (seed §5.4): are workers really consuming? A connected worker is
no proof (bullmq#4479: a worker can stay connected and stop consuming), so:

- passive evidence, sampled every `sample_s`: worker connections, lock TTLs going
  *up* (a live worker renews its locks every lockDuration/2, so the watch lasts
  until the sampled locks were renewed or ran out, at most `timeout_s`), jobs
  starting, completing or failing (the completed/failed sets, the events stream);
- an active round trip only when that evidence proves nothing (or when asked): a
  canary job added LIFO with attempts 1 and removeOnComplete/Fail, watched on the
  queue's events stream until a worker completes or fails it, removed again on
  timeout. It is not free: the user's processor runs it (data `{canary: true}`), it
  leaves events (a failing one `failed` and `retries-exhausted`) and +1 in
  `metrics:completed`/`failed` when worker metrics are on. It jumps the backlog, so a
  rate-limited or globally limited queue gets one only on request, and said so.

Renewed locks and advancing completions outrank a canary that was not picked up: a
worker whose every slot holds a long job is "busy", not "wedged".
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
from redis_runbook.defaults import CANARY_JOB
from redis_runbook.replies import text

Verdict = Literal[
    "processing",
    "busy",
    "idle-with-workers",
    "no-workers",
    "wedged",
    "cannot-verify",
    "canary-failed",
]
CanaryMode = Literal["auto", "always", "never"]
CANARY_PREFIX = "canary-"
LOCK_SAMPLE = 50
EVENT_SCAN = 1000
CONSUMING_EVENTS = frozenset({"active", "completed", "failed", "retries-exhausted", "progress"})


def _number(value: Any) -> int | None:
    try:
        return int(text(value)) if value is not None else None
    except ValueError:
        return None


@dataclass
class Canary:
    """What the canary did (or why none was sent)."""

    sent: bool = False
    outcome: Literal["completed", "failed", "timeout"] | None = None
    ms: float | None = None
    failed_reason: str | None = None
    events: list[str] = field(default_factory=list)
    cost: str | None = None
    skipped: str | None = None
    removed: bool = False
    """A canary not picked up in time was removed (False: a worker took it just then)."""

    def to_json(self) -> dict[str, Any]:
        """Stable JSON (docs/json.md)."""
        return {
            "sent": self.sent,
            "outcome": self.outcome,
            "ms": None if self.ms is None else round(self.ms, 1),
            "failed_reason": self.failed_reason,
            "events": self.events,
            "cost": self.cost,
            "skipped": self.skipped,
            "removed": self.removed,
        }


@dataclass
class QueueVerdict:
    """What was seen for one queue and what it means."""

    queue: QueueRef
    verdict: Verdict
    workers: int | None
    evidence: list[str] = field(default_factory=list)
    canary: Canary = field(default_factory=Canary)

    @property
    def canary_ms(self) -> float | None:
        """The round trip of a canary a worker completed, else None."""
        return self.canary.ms if self.canary.outcome == "completed" else None

    def to_json(self) -> dict[str, Any]:
        """Stable JSON (docs/json.md)."""
        ms = self.canary_ms
        return {
            "queue": self.queue.name,
            "prefix": self.queue.prefix,
            "verdict": self.verdict,
            "workers": self.workers,
            "canary_ms": None if ms is None else round(ms, 1),
            "canary": self.canary.to_json(),
            "evidence": self.evidence,
        }


@dataclass(frozen=True)
class Limits:
    """What holds a queue back besides its workers (meta and the limiter key)."""

    concurrency: int | None = None
    rate_max: int | None = None
    rate_duration: int | None = None
    limiter_ttl_ms: int = 0

    def describe(self) -> str | None:
        """'global rate limit 1 per 60000 ms and global concurrency 1', or None."""
        parts = []
        if self.rate_max:
            parts.append(f"global rate limit {self.rate_max} per {self.rate_duration} ms")
        if self.concurrency:
            parts.append(f"global concurrency {self.concurrency}")
        if self.limiter_ttl_ms > 0 and not self.rate_max:
            parts.append(f"rate limiter holding for {self.limiter_ttl_ms} ms")
        return " and ".join(parts) or None


@dataclass
class _Sample:
    at: float
    counts: QueueCounts
    lock_ttls: dict[str, int]
    tops: tuple[float | None, float | None]
    last_event: str | None
    limits: Limits


def _sample(client: redis.Redis, queues: Sequence[QueueRef]) -> dict[QueueRef, _Sample]:
    samples = {}
    for counts in queue_counts(client, queues):
        q = counts.queue
        ids = next(iter(active_ids(client, q)), [])[:LOCK_SAMPLE]
        pipe = client.pipeline(transaction=False)
        for job_id in ids:
            pipe.pttl(q.lock(job_id))
        pipe.zrevrange(q.key("completed"), 0, 0, withscores=True)
        pipe.zrevrange(q.key("failed"), 0, 0, withscores=True)
        pipe.xrevrange(q.key("events"), count=1)
        pipe.hmget(q.key("meta"), ["concurrency", "max", "duration"])
        pipe.pttl(q.key("limiter"))
        *ttls, completed, failed, last, meta, limiter = pipe.execute()
        samples[q] = _Sample(
            time.monotonic(),
            counts,
            {i: int(t) for i, t in zip(ids, ttls, strict=True) if int(t) > 0},
            (
                float(completed[0][1]) if completed else None,
                float(failed[0][1]) if failed else None,
            ),
            text(last[0][0]) if last else None,
            Limits(_number(meta[0]), _number(meta[1]), _number(meta[2]), max(0, int(limiter))),
        )
    return samples


@dataclass
class _Watch:
    """Passive evidence for one queue, gathered over several samples."""

    first: _Sample
    last: _Sample
    renewed: set[str] = field(default_factory=set)
    consumed: list[str] = field(default_factory=list)
    expiry: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for job_id, ttl in self.first.lock_ttls.items():
            self.expiry[job_id] = self.first.at + ttl / 1000

    @property
    def proven(self) -> bool:
        """Locks renewed or jobs moving: workers are alive."""
        return bool(self.renewed or self.consumed)

    def update(self, client: redis.Redis, new: _Sample) -> None:
        """Compare `new` with the previous sample."""
        prev = self.last
        for job_id, ttl in new.lock_ttls.items():
            went_up = ttl > prev.lock_ttls.get(job_id, ttl)
            outlived = new.at > self.expiry.get(job_id, new.at)  # past its first TTL, still held
            if went_up or outlived:
                self.renewed.add(job_id)
            self.expiry.setdefault(job_id, new.at + ttl / 1000)
        for name, before, after in zip(("completion", "failure"), prev.tops, new.tops, strict=True):
            if (after or 0) > (before or 0):
                self.consumed.append(f"a new {name}")
        if new.last_event and new.last_event != prev.last_event:
            names = _event_names(client, new.counts.queue, prev.last_event, new.last_event)
            moving = sorted(set(names) & CONSUMING_EVENTS)
            if moving:
                self.consumed.append(f"events {', '.join(moving)}")
        self.last = new


def _event_names(client: redis.Redis, q: QueueRef, after: str | None, upto: str) -> list[str]:
    """Event names in the stream after `after` up to `upto`, the canary's left out."""
    low = f"({after}" if after else "-"
    entries: Any = client.xrange(q.key("events"), min=low, max=upto, count=EVENT_SCAN)
    names = []
    for _id, fields in entries:
        values = {text(k): text(v) for k, v in fields.items()}
        if not values.get("jobId", "").startswith(CANARY_PREFIX):
            names.append(values.get("event", ""))
    return names


def watch(
    client: redis.Redis, queues: Sequence[QueueRef], sample_s: float, timeout_s: float
) -> dict[QueueRef, _Watch]:
    """Sample every `sample_s` until each queue proved consumption, or its watch
    ended: one interval, or (with locked active jobs) until the longest lock seen
    first was renewed or ran out, at most `timeout_s`."""
    first = _sample(client, queues)
    watches = {q: _Watch(first[q], first[q]) for q in queues}
    start = time.monotonic()
    ends = {
        q: start + sample_s + min(timeout_s, max(first[q].lock_ttls.values(), default=0) / 1000)
        for q in queues
    }
    pending = list(queues)
    while pending:
        time.sleep(sample_s)  # a measurement interval (the loop's deadline is `ends`)
        new = _sample(client, pending)
        for q in pending:
            watches[q].update(client, new[q])
        now = time.monotonic()
        pending = [
            q
            for q in pending
            if not watches[q].proven and not new[q].counts.paused and now < ends[q]
        ]
    return watches


def _evidence(w: _Watch) -> list[str]:
    b = w.last
    seconds = b.at - w.first.at
    workers = b.counts.workers
    lines = [
        f"{'n/a' if workers is None else workers} worker connection(s)",
        f"{len(w.renewed)} of {len(w.expiry)} sampled lock(s) renewed in {seconds:.1f} s",
        f"jobs moving: {'; '.join(w.consumed)}"
        if w.consumed
        else f"no job started, completed or failed in {seconds:.1f} s",
    ]
    backlog = _backlog(b)
    if backlog:
        lines.append(f"{backlog} job(s) ready")
    if b.counts.active.stale:
        lines.append(
            f"{b.counts.active.stale} active job(s) lost their lock: "
            "redis-runbook queues recover-stale"
        )
    return lines


def _backlog(s: _Sample) -> int:
    return s.counts.waiting + s.counts.prioritized + s.counts.overdue


def _passive_verdict(w: _Watch) -> Verdict | None:
    if w.last.counts.paused:
        return "cannot-verify"
    if w.consumed:
        return "processing"
    if w.renewed:
        return "busy"
    return None


def _unproven(w: _Watch, after_canary: bool, limited: bool = False) -> tuple[Verdict, str | None]:
    """The verdict when nothing proved consumption (and why, when not obvious);
    `limited`: no canary was sent because the queue is limited."""
    b = w.last
    held = [i for i in b.lock_ttls if i not in w.renewed]
    if held:
        longest = max(b.lock_ttls[i] for i in held) / 1000
        return "cannot-verify", (
            f"{len(held)} lock(s) still held but not seen renewed in "
            f"{b.at - w.first.at:.1f} s (a live worker renews every lockDuration/2; "
            f"the longest has {longest:.1f} s left): re-run with a longer --timeout"
        )
    if b.counts.workers == 0:
        return "no-workers", None
    if limited:
        return "cannot-verify", None
    if after_canary or _backlog(b) or b.counts.active.stale:
        return "wedged", None
    return "idle-with-workers", None


def _cost(queue: QueueRef, job_name: str, canary: Canary, metrics: bool) -> str:
    events = ", ".join(dict.fromkeys(canary.events)) or "none seen"
    cost = (
        f"your processor ran a {job_name!r} job with data {{canary: true}}; events left in "
        f"{queue.key('events')}: {events}"
    )
    if canary.outcome == "failed":
        cost += (
            f"; it failed ({canary.failed_reason}): 'failed' and 'retries-exhausted' reach "
            "QueueEvents listeners and alerting, and your worker logged the error"
        )
        if metrics:
            cost += "; +1 in metrics:failed"
    elif metrics:
        cost += "; +1 in metrics:completed"
    return cost + "; the job itself was removed"


async def _canary(
    target: TargetConfig, queue: QueueRef, job_name: str, timeout_s: float
) -> tuple[Canary, bool]:
    """Add the canary, watch the events stream for its end (removed on timeout).
    Returns it and whether worker metrics are on (they count it)."""
    from bullmq import Queue  # imported here: only canaries need it (a slow import)

    client = async_client(target)
    bull = Queue(queue.name, {"connection": client, "prefix": queue.prefix})
    job_id = f"{CANARY_PREFIX}{uuid.uuid4().hex}"
    canary = Canary(sent=True, outcome="timeout")
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
        while canary.outcome == "timeout" and (left := deadline - time.monotonic()) > 0:
            reply = await client.xread({queue.key("events"): cursor}, count=100,
                                       block=max(1, int(min(left, 1.0) * 1000)))  # fmt: skip
            for _stream, entries in reply or []:
                for entry_id, fields in entries:
                    cursor = entry_id
                    if fields.get("jobId") != job_id:
                        continue
                    event = fields.get("event", "")
                    canary.events.append(event)
                    if event in ("completed", "failed") and canary.ms is None:
                        canary.ms = (time.perf_counter() - started) * 1000
                        canary.failed_reason = fields.get("failedReason")
                        canary.outcome = "completed" if event == "completed" else "failed"
        if canary.outcome == "timeout":
            canary.removed = bool(await bull.remove(job_id))  # 0: locked by a worker
        kind = "failed" if canary.outcome == "failed" else "completed"
        metrics = bool(await client.exists(queue.key(f"metrics:{kind}")))
        return canary, metrics
    finally:
        await bull.close()
        await client.aclose()


def canary(
    target: TargetConfig, queue: QueueRef, job_name: str, timeout_s: float
) -> tuple[Canary, bool]:
    """The canary round trip for one queue (see `_canary`)."""
    return asyncio.run(_canary(target, queue, job_name, timeout_s))


def _judge(
    client: redis.Redis,
    target: TargetConfig,
    w: _Watch,
    mode: CanaryMode,
    job_name: str,
    timeout_s: float,
) -> QueueVerdict:
    q = w.last.counts.queue
    verdict = _passive_verdict(w)
    result = QueueVerdict(q, verdict or "cannot-verify", w.last.counts.workers, _evidence(w))
    if w.last.counts.paused:
        result.evidence.append("the queue is paused")
        result.canary.skipped = "not sent: the queue is paused"
        return result
    limits = w.last.limits.describe()
    backlog = _backlog(w.last)
    if verdict == "busy":
        result.evidence.append(
            "busy: live workers hold the active jobs (locks renewed) and nothing finished "
            f"yet; {backlog} job(s) wait for a free slot"
        )
    if mode == "never" or (mode == "auto" and verdict is not None):
        result.canary.skipped = (
            "not sent: --passive" if mode == "never" else "not needed: the evidence proves it"
        )
    elif limits and mode == "auto":
        result.canary.skipped = (
            f"not sent: the queue has a {limits}; a canary would jump its {backlog} waiting "
            "job(s) and take one of its slots (--canary sends one anyway)"
        )
        result.evidence.append(f"canary {result.canary.skipped}")
    else:
        result.canary, metrics = canary(target, q, job_name, timeout_s)
        _canary_verdict(client, result, w, verdict, timeout_s)
        if limits:
            result.evidence.append(
                f"the canary jumped {backlog} waiting job(s) of a queue with a {limits} "
                "and took one of its slots"
            )
        result.canary.cost = _cost(q, job_name, result.canary, metrics)
        result.evidence.append(f"canary cost: {result.canary.cost}")
        return result
    if verdict is None:
        limited = bool(limits) and mode == "auto"
        result.verdict, why = _unproven(w, after_canary=False, limited=limited)
        if why:
            result.evidence.append(why)
    return result


def _canary_verdict(
    client: redis.Redis, result: QueueVerdict, w: _Watch, verdict: Verdict | None, timeout_s: float
) -> None:
    c = result.canary
    if c.outcome == "completed":
        result.verdict = "processing"
        result.evidence.append(f"canary completed in {c.ms:.0f} ms")
        return
    if c.outcome == "failed":
        result.verdict = "canary-failed"
        result.evidence.append(
            f"canary FAILED in {c.ms:.0f} ms: {c.failed_reason} (a worker took it, so it "
            "consumes, but its processor does not return at once for the canary's name)"
        )
        return
    result.evidence.append(
        f"canary not picked up within {timeout_s:g} s "
        + ("(removed)" if c.removed else "(a worker took it just then: it runs, then goes)")
    )
    if verdict is None:  # what moved meanwhile still counts
        w.update(client, _sample(client, [result.queue])[result.queue])
        verdict = _passive_verdict(w)
        result.evidence[:3] = _evidence(w)[:3]
    if verdict is not None:
        result.verdict = verdict
        result.evidence.append(
            "every slot is busy: the locks and jobs above prove the workers live"
        )
        return
    result.verdict, why = _unproven(w, after_canary=True)
    if why:
        result.evidence.append(why)


def verify(
    client: redis.Redis,
    target: TargetConfig,
    queues: Sequence[QueueRef],
    *,
    sample_s: float = 2.0,
    canary_mode: CanaryMode = "auto",
    job_name: str = CANARY_JOB,
    timeout_s: float = 30.0,
) -> list[QueueVerdict]:
    """Passive evidence for every queue; then a canary where it proves nothing
    (`auto`), always (`always`, paused queues excepted) or never (`never`)."""
    watches = watch(client, queues, sample_s, timeout_s)
    return [_judge(client, target, watches[q], canary_mode, job_name, timeout_s) for q in queues]
