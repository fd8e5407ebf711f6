"""`queues recover-stale` as a plan: assess every queue's active jobs (read-only),
then one step per queue that moves the stale ones back, journaling every batch.

Refused on a replica (writes would fail or diverge) and under an eviction policy
other than noeviction (locks can be evicted: "stale" would not mean "abandoned"),
unless forced."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from redis_runbook.bullmq.counts import ActiveSplit, active_ids, split_active
from redis_runbook.bullmq.keys import QueueRef
from redis_runbook.bullmq.stale import BATCH, StaleResult, recover_stale
from redis_runbook.errors import Refused
from redis_runbook.journal import Journal
from redis_runbook.procedures.context import ProcedureContext
from redis_runbook.procedures.engine import Confirm, Plan, Step, StepFailed
from redis_runbook.redisinfo import parse_info, text

BREAK_WORD = "BREAK-LOCKS"
LOCK_WAIT_MARGIN_S = 1.0
POLL_S = 0.25


@dataclass
class Options:
    """How recover-stale behaves."""

    count_as_stall: bool = False
    break_immortal: bool = False
    wait_for_locks: bool = False
    force: bool = False
    batch: int = BATCH


def preflight(client: redis.Redis, force: bool) -> list[str]:
    """Refuse a replica or an evicting server unless forced; returns notes."""
    info = parse_info(text(client.execute_command("INFO", "replication")))
    memory = parse_info(text(client.execute_command("INFO", "memory")))
    notes = []
    role, policy = info.get("role", "?"), memory.get("maxmemory_policy", "?")
    problems = []
    if role != "master":
        problems.append(f"the target is a {role}: recover on the master")
    if policy != "noeviction":
        problems.append(
            f"maxmemory-policy is {policy}: locks may have been evicted, so a missing lock "
            "does not prove the worker is gone"
        )
    if problems and not force:
        raise Refused(
            "; ".join(problems),
            "fix it first (CONFIG SET maxmemory-policy noeviction / target the master), or "
            "accept the risk: redis-runbook queues recover-stale --force",
        )
    notes += [f"forced despite: {p}" for p in problems]
    return notes


def _wait_for_locks(client: redis.Redis, queues: Sequence[QueueRef], wait_s: float) -> str:
    """Poll until no active job of `queues` holds a lock, or `wait_s` has passed."""
    deadline = time.monotonic() + wait_s
    while True:
        locked = sum(split_active(client, q)[0].locked for q in queues)
        if locked == 0:
            return "no active job holds a lock any more"
        if time.monotonic() >= deadline:
            return f"{locked} active job(s) still hold a lock (workers renewing them): left alone"
        time.sleep(POLL_S)


def plan_recover_stale(ctx: ProcedureContext, queues: Sequence[QueueRef], options: Options) -> Plan:
    """Assess (read-only) and build the plan; Refused by the pre-flight checks."""
    client = ctx.client(decode=False)
    try:
        notes = preflight(client, options.force)
        splits: dict[QueueRef, ActiveSplit] = {q: split_active(client, q)[0] for q in queues}
    finally:
        client.close()
    journal = Journal.in_dir(ctx.config.runbook.state_dir)
    steps: list[Step] = []
    longest_ms = max((s.max_lock_ttl_ms for s in splits.values()), default=0)
    if options.wait_for_locks and longest_ms:
        wait_s = longest_ms / 1000 + LOCK_WAIT_MARGIN_S

        def wait() -> str:
            waiting = ctx.client(decode=False)
            try:
                return _wait_for_locks(waiting, queues, wait_s)
            finally:
                waiting.close()

        steps.append(Step(f"wait up to {wait_s:.0f} s for the remaining locks to expire", wait))
    for queue, split in splits.items():
        notes.append(
            f"{queue.display}: {split.stale} stale, {split.locked} locked, "
            f"{split.immortal} immortal lock(s), {split.orphan} orphan id(s)"
        )
        if split.stale or (options.break_immortal and split.immortal) or options.wait_for_locks:
            steps.append(_queue_step(ctx, journal, queue, options))
    if not steps:
        notes.append("nothing to recover")
    confirm = Confirm.TYPED if options.break_immortal else Confirm.YES_NO
    return Plan(
        procedure="queues recover-stale",
        target=ctx.where,
        steps=steps,
        confirm=confirm if steps else Confirm.NONE,
        confirm_word=BREAK_WORD if options.break_immortal else "yes",
        notes=notes,
    )


def _queue_step(ctx: ProcedureContext, journal: Journal, queue: QueueRef, options: Options) -> Step:
    def journal_batch(result: StaleResult, moved: int, ms: float) -> None:
        journal.record(
            target=ctx.where,
            procedure="queues recover-stale",
            step=f"{queue.display} batch {result.batches}",
            outcome="done",
            message=f"moved {moved}",
            figures={"moved": moved, "ms": round(ms, 2)},
        )

    def run() -> str:
        client = ctx.client(decode=False)
        try:
            split, stale = split_active(client, queue)
            candidates = list(stale)
            if options.break_immortal:
                candidates += _immortal_ids(client, queue)
            result = recover_stale(
                client,
                queue,
                candidates,
                count_as_stall=options.count_as_stall,
                break_immortal=options.break_immortal,
                batch=options.batch,
                on_batch=journal_batch,
            )
        finally:
            client.close()
        if result.count("orphan") and result.moved == 0 and split.stale:
            raise StepFailed(f"{queue.display}: every stale id is an orphan (no job hash)")
        left = ", ".join(f"{result.count(k)} {k}" for k in ("locked", "immortal", "orphan", "gone")
                         if result.count(k))  # fmt: skip
        return (
            f"moved {result.moved} job(s) back to the head of the queue in "
            f"{result.batches} batch(es), longest {result.max_batch_ms:.1f} ms"
            + (f"; left alone: {left}" if left else "")
        )

    return Step(f"{queue.display}: move stale active jobs back", run)


def _immortal_ids(client: redis.Redis, queue: QueueRef) -> list[str]:
    ids = [job_id for chunk in active_ids(client, queue) for job_id in chunk]
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.pttl(queue.lock(job_id))
    return [job_id for job_id, ttl in zip(ids, pipe.execute(), strict=True) if int(ttl) == -1]
