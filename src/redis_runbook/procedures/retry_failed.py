"""`queues retry-failed` as a plan: read the failed jobs of the queues (read-only,
paged), keep the ones the filters choose, show how many per queue and normalised
reason, then one step per queue that moves them back with BullMQ v5's retry
semantics (bullmq/failed.py), journaling every script call, and a last step that
checks none of the moved jobs is still in `failed`. Refused on a replica."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from redis_runbook.bullmq.failed import (
    CALL_BUDGET_MS,
    RETRY_BATCH,
    FailedJob,
    RetryResult,
    group_failed,
    read_failed,
    retry,
    select,
)
from redis_runbook.bullmq.keys import QueueRef
from redis_runbook.errors import Refused
from redis_runbook.journal import Journal
from redis_runbook.procedures.context import ProcedureContext
from redis_runbook.procedures.engine import Confirm, Plan, Step, StepFailed
from redis_runbook.replies import parse_info, text

PROCEDURE = "queues retry-failed"


@dataclass
class Selection:
    """Which failed jobs to retry."""

    since_ms: int | None = None
    until_ms: int | None = None
    reason: re.Pattern[str] | None = None
    names: list[str] = field(default_factory=list)
    limit: int | None = None


def refuse_replica(client: redis.Redis) -> None:
    """Refused (exit 3) unless the target is a master."""
    role = parse_info(text(client.execute_command("INFO", "replication"))).get("role", "?")
    if role != "master":
        raise Refused(
            f"the target is a {'replica' if role == 'slave' else role}: failed jobs are "
            "retried on the master",
            "aim [target] at the master (redis-runbook config show), then run "
            "redis-runbook queues retry-failed again",
        )


def plan_retry_failed(
    ctx: ProcedureContext, queues: Sequence[QueueRef], selection: Selection
) -> Plan:
    """Read and choose the jobs (read-only) and build the plan; Refused on a replica."""
    client = ctx.client(decode=False)
    try:
        refuse_replica(client)
        found: list[FailedJob] = []
        for queue in queues:
            found += read_failed(client, queue, selection.since_ms, selection.until_ms)
    finally:
        client.close()
    chosen = select(found, selection.reason, selection.names, selection.limit)
    groups = group_failed(chosen)
    notes = [f"{len(found)} failed job(s) in the time range, {len(chosen)} chosen"]
    notes += [
        f"{g.queue.display}: {g.count} x {g.reason!r} (names: "
        + ", ".join(f"{n} {c}" for n, c in g.names.most_common())
        + ")"
        for g in groups
    ]
    journal = Journal.in_dir(ctx.config.runbook.state_dir)
    results: dict[QueueRef, RetryResult] = {}
    steps = [
        _queue_step(ctx, journal, queue, [j for j in chosen if j.queue == queue], results)
        for queue in queues
        if any(j.queue == queue for j in chosen)
    ]
    if steps:
        steps.append(_verify_step(ctx, chosen, results))
    else:
        notes.append("nothing to retry")

    def extra() -> dict[str, Any]:
        return {
            "selected": len(chosen),
            "groups": [g.to_json() for g in groups],
            "retried": {q.display: r.moved for q, r in results.items()},
            "skipped": {q.display: r.skipped for q, r in results.items()},
        }

    return Plan(
        procedure=PROCEDURE,
        target=ctx.where,
        steps=steps,
        confirm=Confirm.YES_NO if steps else Confirm.NONE,
        notes=notes,
        extra=extra,
    )


def _queue_step(
    ctx: ProcedureContext,
    journal: Journal,
    queue: QueueRef,
    jobs: list[FailedJob],
    results: dict[QueueRef, RetryResult],
) -> Step:
    def journal_call(result: RetryResult, moved: int, examined: int, ms: float) -> None:
        journal.record(
            target=ctx.where,
            procedure=PROCEDURE,
            step=f"{queue.display} call {result.calls}",
            outcome="done",
            message=f"examined {examined}, moved {moved}",
            figures={"examined": examined, "moved": moved, "ms": round(ms, 2)},
        )

    def run() -> str:
        client = ctx.client(decode=False)
        try:
            result = retry(client, queue, jobs, batch=RETRY_BATCH, budget_ms=CALL_BUDGET_MS,
                           on_call=journal_call)  # fmt: skip
        finally:
            client.close()
        results[queue] = result
        skipped = (
            f"; {len(result.skipped)} skipped (no longer failed as read: retried, removed "
            "or failed again meanwhile)"
            if result.skipped
            else ""
        )
        return (
            f"moved {result.moved} job(s) back to be processed in {result.calls} call(s), "
            f"longest {result.max_call_ms:.1f} ms{skipped}"
        )

    return Step(f"{queue.display}: retry {len(jobs)} failed job(s)", run)


def _verify_step(
    ctx: ProcedureContext, chosen: list[FailedJob], results: dict[QueueRef, RetryResult]
) -> Step:
    def run() -> str:
        client = ctx.client(decode=False)
        try:
            pipe = client.pipeline(transaction=False)
            for job in chosen:
                pipe.zscore(job.queue.key("failed"), job.job_id)
            scores = pipe.execute()
        finally:
            client.close()
        skipped = {(q, i) for q, r in results.items() for i in r.skipped}
        left = [
            f"{job.queue.display}:{job.job_id}"
            for job, score in zip(chosen, scores, strict=True)
            if score is not None and int(score) == job.failed_ms
            and (job.queue, job.job_id) not in skipped
        ]  # fmt: skip
        if left:
            raise StepFailed(
                f"{len(left)} job(s) still failed as they were: {', '.join(left[:10])}; "
                "run redis-runbook queues retry-failed again"
            )
        moved = sum(r.moved for r in results.values())
        return f"none of the {moved} retried job(s) is still in failed as it was"

    return Step("check the retried jobs left failed", run)
