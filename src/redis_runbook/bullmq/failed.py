"""Failed jobs after an incident (issue 16): read a queue's `failed` sorted set by
failure time (ZRANGEBYSCORE in pages, never the whole set at once), group the jobs by
their normalised `failedReason`, and move the chosen ones back with BullMQ v5's retry
semantics through our own Lua script (lua/retry_failed.lua: reprocessJob-8.lua per
job, a prioritized job back to `prioritized`), in calls bounded by a time budget.

Reading is read-only (safe on a replica); only `retry_call` writes."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import redis

from redis_runbook.bullmq.keys import QueueRef

#: Ids per ZRANGEBYSCORE page and per HMGET pipeline.
PAGE = 500
#: Jobs handed to one script call, and the milliseconds after which it stops early.
RETRY_BATCH = 200
CALL_BUDGET_MS = 8
#: Longest normalised reason kept (the raw one is in the job).
REASON_MAX = 200
SCRIPT = resources.files("redis_runbook.bullmq").joinpath("lua", "retry_failed.lua").read_text()

# Folded, in this order, so that one cause is one group: the job id after "job",
# hosts, hex digests (a script's sha), then every other number.
_FOLDS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(\bfor job |\bjob id |\bJob )([^\s.,;:]+(?:\.[^\s.,;:]+)*?)(?=[.,;:]?(\s|$))"),
     r"\1<id>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<host>"),
    (re.compile(r"\[[0-9a-fA-F:]+\](?::\d+)?"), "<host>"),
    (re.compile(r"\b[a-zA-Z][\w-]*(?:\.[\w-]+)+:\d{2,5}\b"), "<host>"),
    (re.compile(r"\blocalhost:\d{2,5}\b"), "<host>"),
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                r"[0-9a-fA-F]{12}\b"), "<uuid>"),
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{12,}\b"), "<hex>"),
    (re.compile(r"\d+(?:\.\d+)?"), "<n>"),
)  # fmt: skip


def normalise(reason: str | None) -> str:
    """`failedReason` with what differs between jobs of one cause folded: the job id
    after "for job", hosts and ports, UUIDs, hex digests, numbers; first line only,
    whitespace squeezed, at most REASON_MAX characters. None/empty: "(no reason)".
    A reason stored as a JSON string (the Python bullmq port's workers write it so;
    Node writes the message itself) is decoded first, so both group alike."""
    if not reason or not reason.strip():
        return "(no reason)"
    text = reason.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        with contextlib.suppress(ValueError):
            decoded = json.loads(text)
            text = decoded.strip() if isinstance(decoded, str) and decoded.strip() else text
    text = " ".join(text.splitlines()[0].split())
    for pattern, replacement in _FOLDS:
        text = pattern.sub(replacement, text)
    return text if len(text) <= REASON_MAX else text[: REASON_MAX - 1] + "…"


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class FailedJob:
    """One job in a queue's `failed` set."""

    queue: QueueRef
    job_id: str
    name: str
    reason: str
    #: Its score in `failed`: finishedOn, ms since the epoch.
    failed_ms: int
    attempts_made: int

    @property
    def group(self) -> str:
        """The normalised reason."""
        return normalise(self.reason)


def _scores(client: redis.Redis, key: str, low: int, high: int) -> Iterator[tuple[str, int]]:
    """(member, score) of `key` with low <= score <= high, oldest first, PAGE at a time
    (the next page starts at the last score read; members already read are skipped)."""
    start: int | str = low
    seen_at_start: set[str] = set()
    while True:
        reply: Any = client.zrangebyscore(key, start, high, start=0, num=PAGE + len(seen_at_start),
                                          withscores=True)  # fmt: skip
        fresh = [(m, int(s)) for raw, s in reply if (m := _text(raw) or "") not in seen_at_start]
        yield from fresh
        if len(reply) < PAGE + len(seen_at_start) or not fresh:
            return
        last = fresh[-1][1]
        seen_at_start = {m for m, s in fresh if s == last} | (
            seen_at_start if start == last else set()
        )
        start = last


def read_failed(
    client: redis.Redis,
    queue: QueueRef,
    since_ms: int | None = None,
    until_ms: int | None = None,
) -> list[FailedJob]:
    """The queue's failed jobs that failed between `since_ms` and `until_ms` (both
    included, None: unbounded), oldest first: ZRANGEBYSCORE in pages, then the job
    fields (name, failedReason, atm) with one pipelined HMGET per page. An id whose
    hash is gone is skipped. Read-only."""
    low = since_ms if since_ms is not None else 0
    high = until_ms if until_ms is not None else 2**53
    jobs: list[FailedJob] = []
    page: list[tuple[str, int]] = []

    def flush() -> None:
        pipe = client.pipeline(transaction=False)
        for job_id, _ in page:
            pipe.hmget(queue.job(job_id), ["name", "failedReason", "atm"])
        for (job_id, score), (name, reason, atm) in zip(page, pipe.execute(), strict=True):
            if name is None and reason is None:
                continue
            attempts = _text(atm) or "0"
            jobs.append(FailedJob(queue, job_id, _text(name) or "", _text(reason) or "", score,
                                  int(attempts) if attempts.isdigit() else 0))  # fmt: skip
        page.clear()

    for item in _scores(client, queue.key("failed"), low, high):
        page.append(item)
        if len(page) >= PAGE:
            flush()
    if page:
        flush()
    return jobs


@dataclass
class FailureGroup:
    """Failed jobs of one queue with one normalised reason."""

    queue: QueueRef
    reason: str
    count: int = 0
    first_ms: int = 0
    last_ms: int = 0
    names: Counter[str] = field(default_factory=Counter)
    #: One raw failedReason of the group (the newest), as a worker recorded it.
    example: str = ""
    job_ids: list[str] = field(default_factory=list)

    def to_json(self, ids_shown: int = 10) -> dict[str, Any]:
        """The group as docs/json.md describes it."""
        return {
            "queue": self.queue.display,
            "reason": self.reason,
            "count": self.count,
            "first_failed_ms": self.first_ms,
            "last_failed_ms": self.last_ms,
            "names": dict(self.names.most_common()),
            "example": self.example,
            "job_ids": self.job_ids[:ids_shown],
        }


def group_failed(jobs: Sequence[FailedJob]) -> list[FailureGroup]:
    """Groups by (queue, normalised reason), the biggest first (then by queue, reason)."""
    groups: dict[tuple[QueueRef, str], FailureGroup] = {}
    for job in jobs:
        key = (job.queue, job.group)
        group = groups.get(key)
        if group is None:
            group = groups[key] = FailureGroup(job.queue, job.group, first_ms=job.failed_ms)
        group.count += 1
        group.first_ms = min(group.first_ms, job.failed_ms)
        if job.failed_ms >= group.last_ms:
            group.last_ms, group.example = job.failed_ms, job.reason
        group.names[job.name] += 1
        group.job_ids.append(job.job_id)
    return sorted(groups.values(), key=lambda g: (-g.count, g.queue, g.reason))


def select(
    jobs: Sequence[FailedJob],
    reason: re.Pattern[str] | None = None,
    names: Sequence[str] = (),
    limit: int | None = None,
) -> list[FailedJob]:
    """The jobs whose raw or normalised reason `reason` matches (re.search) and whose
    name is one of `names` (when given), oldest failure first, at most `limit`."""
    chosen = [
        job for job in sorted(jobs, key=lambda j: (j.failed_ms, j.queue, j.job_id))
        if (reason is None or reason.search(job.reason) or reason.search(job.group))
        and (not names or job.name in names)
    ]  # fmt: skip
    return chosen[:limit] if limit is not None else chosen


@dataclass
class RetryResult:
    """What the retry calls did to one queue."""

    queue: QueueRef
    moved: int = 0
    skipped: list[str] = field(default_factory=list)
    calls: int = 0
    max_call_ms: float = 0.0


def retry_call(
    client: redis.Redis, queue: QueueRef, jobs: Sequence[FailedJob], budget_ms: float
) -> tuple[int, int, list[str]]:
    """One script call over `jobs`: (moved, examined, skipped ids). It stops once it has
    run `budget_ms`; the jobs after `examined` are the next call's."""
    keys = [queue.key(s) for s in ("failed", "wait", "paused", "meta", "active", "marker",
                                   "events", "prioritized", "pc")]  # fmt: skip
    args: list[str | int | float] = [queue.base, queue.layout, budget_ms]
    for job in jobs:
        args += [job.job_id, job.failed_ms]
    reply: Any = client.register_script(SCRIPT)(keys=keys, args=args)  # EVALSHA
    skipped = [(_text(entry) or "").partition(":")[2] for entry in reply[2:]]
    return int(reply[0]), int(reply[1]), skipped


def retry(
    client: redis.Redis,
    queue: QueueRef,
    jobs: Sequence[FailedJob],
    *,
    batch: int = RETRY_BATCH,
    budget_ms: float = CALL_BUDGET_MS,
    on_call: Callable[[RetryResult, int, int, float], None] | None = None,
) -> RetryResult:
    """Retry `jobs` (all of `queue`) in script calls of at most `batch` jobs and
    `budget_ms` each. A job no longer in `failed` with the failure time it had when it
    was read (retried, removed, or failed again meanwhile) is skipped, not moved.
    `on_call(result, moved, examined, ms)` after each call."""
    result = RetryResult(queue)
    done = 0
    while done < len(jobs):
        chunk = jobs[done : done + batch]
        began = time.perf_counter()
        moved, examined, skipped = retry_call(client, queue, chunk, budget_ms)
        elapsed_ms = (time.perf_counter() - began) * 1000
        done += max(examined, 1)
        result.moved += moved
        result.skipped += skipped
        result.calls += 1
        result.max_call_ms = max(result.max_call_ms, elapsed_ms)
        if on_call:
            on_call(result, moved, examined, elapsed_ms)
    return result
