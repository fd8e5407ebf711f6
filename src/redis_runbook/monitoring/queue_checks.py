"""The monitor's BullMQ checks, one set per queue: stale active jobs, waiting backlog,
backlog growth, failed-job growth, and no workers on a queue with waiting jobs.
Growth is measured against the previous cycle's counts (kept in the state file)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

from redis_runbook.bullmq.counts import QueueCounts
from redis_runbook.bullmq.schedulers import MISSING_HINT, Expected
from redis_runbook.checks.base import banded
from redis_runbook.config import Band, Thresholds
from redis_runbook.monitoring.queue_sampler import stale_active
from redis_runbook.status import CheckResult, Status


def _per_minute(now: int, before: Any, seconds: float) -> float | None:
    if not isinstance(before, int | float) or seconds <= 0:
        return None
    return max(0.0, (now - before) / (seconds / 60))


def queue_observations(
    counts: QueueCounts,
    previous: Mapping[str, Any] | None,
    now: float,
    thresholds: Thresholds,
) -> Iterator[CheckResult]:
    """The observations for one queue (keys `queue:<prefix>:<name>:<check>`)."""
    q = counts.queue
    scope = f"queue:{q.prefix}:{q.name}:"
    ref = q.display

    def observed(
        check: str, value: float, band: Band, shown: str, summary: str, hint: str, unit: str = ""
    ) -> CheckResult:
        r = banded(
            check,
            value,
            band,
            shown=shown,
            summary=f"{ref}: {summary}",
            hint=f"redis-runbook {hint} --queue {ref}",
            unit=unit,
        )
        return replace(r, name=scope + check)

    stale = stale_active(counts)
    yield observed(
        "queue_stale_jobs",
        stale,
        thresholds.queue_stale_jobs,
        str(stale),
        f"{stale} active job(s) without a live lock",
        "queues recover-stale",
    )
    waiting = 0 if counts.paused else counts.waiting
    yield observed(
        "queue_waiting",
        waiting,
        thresholds.queue_waiting_jobs,
        str(waiting),
        f"{waiting} job(s) waiting",
        "workers verify",
    )
    elapsed = now - previous["t"] if previous and "t" in previous else 0.0
    growth = _per_minute(waiting, (previous or {}).get("waiting"), elapsed)
    if growth is not None:
        yield observed(
            "queue_waiting_growth",
            growth,
            thresholds.queue_waiting_growth_per_min,
            f"{growth:.0f}/min",
            f"backlog grows by {growth:.0f}/min",
            "workers verify",
            unit="/min",
        )
    failed = _per_minute(counts.failed, (previous or {}).get("failed"), elapsed)
    if failed is not None:
        yield observed(
            "queue_failed_growth",
            failed,
            thresholds.queue_failed_per_min,
            f"{failed:.0f}/min",
            f"{failed:.0f} job(s)/min failing",
            "queues status",
            unit="/min",
        )
    if counts.workers is not None:
        idle = waiting > 0 and counts.workers == 0
        yield CheckResult(
            scope + "queue_no_workers",
            Status.CRITICAL if idle else Status.OK,
            f"{counts.workers} worker(s), {waiting} waiting",
            "workers > 0 while jobs wait",
            f"{ref}: {waiting} job(s) waiting and no worker connected"
            if idle
            else f"{ref}: {counts.workers} worker(s)",
            f"start the workers for {ref}; then redis-runbook workers verify --queue {ref}"
            if idle
            else None,
        )


def queue_memory(counts: QueueCounts, now: float) -> dict[str, Any]:
    """What the next cycle compares with."""
    return {"t": now, "waiting": 0 if counts.paused else counts.waiting, "failed": counts.failed}


def scheduler_observations(
    expected: list[Expected], missing: list[Expected]
) -> Iterator[CheckResult]:
    """`queue:<prefix>:<queue>:queue_schedulers_missing` for each queue with expected
    job schedulers: CRITICAL while one is missing (its cron-like work has stopped and
    nothing else says so), else OK. The queue need not exist."""
    by_queue: dict[tuple[str, str], list[Expected]] = {}
    for e in expected:
        by_queue.setdefault((e.prefix, e.queue), []).append(e)
    gone = set(missing)
    for (prefix, queue), wanted in by_queue.items():
        lost = [e for e in wanted if e in gone]
        ref = wanted[0].ref.display
        ids = ", ".join(e.id for e in lost)
        yield CheckResult(
            f"queue:{prefix}:{queue}:queue_schedulers_missing",
            Status.CRITICAL if lost else Status.OK,
            f"{len(lost)} of {len(wanted)} missing",
            "every expected scheduler registered",
            f"{ref}: job scheduler(s) missing: {ids}"
            if lost
            else f"{ref}: {len(wanted)} expected job scheduler(s) registered",
            MISSING_HINT if lost else None,
        )
