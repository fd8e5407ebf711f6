"""`queues recover-stale` as a plan: assess every queue's active jobs (read-only,
one consistent read from the tail), then one step per queue that moves the stale ones
back (walks of the whole list, repeated until a read finds none, bounded), journaling
every script call, and a last step that re-counts and fails while any is left.

Refused on a replica (writes would fail or diverge) and under an eviction policy
other than noeviction (locks can be evicted: "stale" would not mean "abandoned"),
unless forced."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from redis_runbook.bullmq.keys import QueueRef
from redis_runbook.bullmq.stale import DEFA, CallResult, PassResult, Survey, recover_pass
from redis_runbook.bullmq.stale import survey as survey_queue
from redis_runbook.defaults import STALE_BATCH
from redis_runbook.errors import Refused
from redis_runbook.journal import Journal
from redis_runbook.procedures.context import ProcedureContext
from redis_runbook.procedures.engine import Confirm, Plan, Step, StepFailed
from redis_runbook.replies import parse_info, text

BREAK_WORD = "BREAK-LOCKS"
LOCK_WAIT_MARGIN_S = 1.0
POLL_S = 0.25
#: Walks of a queue's active list in one step before it gives up (each ends with a read).
MAX_PASSES = 3
SHOWN_IDS = 10


@dataclass
class Options:
    """How recover-stale behaves."""

    count_as_stall: bool = False
    break_immortal: bool = False
    wait_for_locks: bool = False
    force: bool = False
    batch: int = STALE_BATCH


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
        locked = sum(survey_queue(client, q).split.locked for q in queues)
        if locked == 0:
            return "no active job holds a lock any more"
        if time.monotonic() >= deadline:
            return f"{locked} active job(s) still hold a lock (workers renewing them): left alone"
        time.sleep(POLL_S)


def _left(survey: Survey, options: Options) -> list[str]:
    """The ids a finished recovery must not leave in active."""
    return survey.stale + (survey.immortal if options.break_immortal else [])


def _unread(queue: QueueRef, survey: Survey) -> str | None:
    """Why `survey` cannot prove that nothing is left, or None."""
    if survey.complete:
        return None
    return (
        f"{queue.display}: active changed faster than it could be read to the end "
        f"({survey.split.total} ids read)"
    )


def _shown(ids: Sequence[str]) -> str:
    more = f" and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else ""
    return ", ".join(ids[:SHOWN_IDS]) + more


def plan_recover_stale(ctx: ProcedureContext, queues: Sequence[QueueRef], options: Options) -> Plan:
    """Assess (read-only) and build the plan; Refused by the pre-flight checks."""
    bullmq = ctx.config.bullmq
    client = ctx.client(decode=False)
    try:
        notes = preflight(client, options.force)
        surveys: dict[QueueRef, Survey] = {
            q: survey_queue(client, q, max_stalled=bullmq.max_stalled_for(q.display))
            for q in queues
        }
    finally:
        client.close()
    journal = Journal.in_dir(ctx.config.runbook.state_dir)
    steps: list[Step] = []
    longest_ms = max((s.split.max_lock_ttl_ms for s in surveys.values()), default=0)
    if options.wait_for_locks and longest_ms:
        wait_s = longest_ms / 1000 + LOCK_WAIT_MARGIN_S

        def wait() -> str:
            waiting = ctx.client(decode=False)
            try:
                return _wait_for_locks(waiting, queues, wait_s)
            finally:
                waiting.close()

        steps.append(Step(f"wait up to {wait_s:.0f} s for the remaining locks to expire", wait))
    for queue, survey in surveys.items():
        split = survey.split
        note = (
            f"{queue.display}: {split.stale} stale, {split.locked} locked, "
            f"{split.immortal} immortal lock(s), {split.orphan} orphan id(s)"
        )
        if options.count_as_stall:
            failing = [i for i in survey.would_fail
                       if options.break_immortal or i not in survey.immortal]  # fmt: skip
            limit = bullmq.max_stalled_for(queue.display)
            note += (
                f"; {len(failing)} to be failed by the next worker (stalled more than "
                f"max_stalled_count {limit})"
            )
        if not survey.complete:
            note += "; the list grew faster than it was read: counts are partial"
        notes.append(note)
        if _left(survey, options) or options.wait_for_locks:
            steps.append(_queue_step(ctx, journal, queue, options))
    if options.count_as_stall:
        known = {q.display for q in queues}
        for name in sorted(set(bullmq.max_stalled_count_per_queue) - known):
            notes.append(
                f"[bullmq] max_stalled_count_per_queue names {name!r}: not among these queues"
            )
    if steps:
        steps.append(_recount_step(ctx, list(surveys), options))
    else:
        notes.append("nothing to recover")
    confirm = Confirm.TYPED if options.break_immortal else Confirm.YES_NO
    return Plan(
        procedure="queues recover-stale",
        target=ctx.where,
        steps=steps,
        confirm=confirm if steps else Confirm.NONE,
        confirm_word=BREAK_WORD if options.break_immortal else "yes",
        data_loss=bool(steps) and options.break_immortal,
        notes=notes,
    )


def _queue_step(ctx: ProcedureContext, journal: Journal, queue: QueueRef, options: Options) -> Step:
    max_stalled = ctx.config.bullmq.max_stalled_for(queue.display)

    def journal_call(result: PassResult, call: CallResult, ms: float) -> None:
        journal.record(
            target=ctx.where,
            procedure="queues recover-stale",
            step=f"{queue.display} call {result.calls}",
            outcome="done",
            message=f"examined {call.examined}, moved {call.moved}",
            figures={"examined": call.examined, "moved": call.moved,
                     "failed": len(call.failed), "ms": round(ms, 2)},
        )  # fmt: skip

    def run() -> str:
        client = ctx.client(decode=False)
        result = PassResult(queue)
        passes = 0
        try:
            while True:
                passes += 1
                recover_pass(
                    client, queue, count_as_stall=options.count_as_stall,
                    break_immortal=options.break_immortal, max_stalled=max_stalled,
                    batch=options.batch, result=result, on_call=journal_call,
                )  # fmt: skip
                survey = survey_queue(client, queue)
                left = _left(survey, options)
                if (not left and survey.complete) or passes >= MAX_PASSES:
                    break
        finally:
            client.close()
        if left:
            raise StepFailed(
                f"{queue.display}: {len(left)} stale job(s) still in active after {passes} "
                f"walk(s) of the list ({_shown(left)}); moved {result.moved}"
            )
        immortal = set() if options.break_immortal else result.immortal
        pairs = (("immortal", immortal), ("orphan", result.orphan))
        kept = [f"{len(ids)} {kind}" for kind, ids in pairs if ids]
        failed = (f"; {len(result.failed)} marked to fail at the next worker ({DEFA!r})"
                  if result.failed else "")  # fmt: skip
        return (
            f"moved {result.moved} job(s) back to the head of the queue in {result.calls} "
            f"call(s) over {passes} walk(s), longest {result.max_call_ms:.1f} ms{failed}"
            + (f"; left alone: {', '.join(kept)}" if kept else "")
        )

    return Step(f"{queue.display}: move stale active jobs back", run)


def _recount_step(ctx: ProcedureContext, queues: list[QueueRef], options: Options) -> Step:
    def run() -> str:
        client = ctx.client(decode=False)
        try:
            surveys = {q: survey_queue(client, q) for q in queues}
        finally:
            client.close()
        left = {q: _left(s, options) for q, s in surveys.items()}
        remaining = [f"{q.display}: {len(ids)} stale job(s) still in active ({_shown(ids)})"
                     for q, ids in left.items() if ids]  # fmt: skip
        unread = [why for q, s in surveys.items() if (why := _unread(q, s))]
        if unread and not remaining:
            raise StepFailed(
                "; ".join(unread) + ": cannot tell that no stale job is left; "
                "run redis-runbook queues status, then queues recover-stale again"
            )
        if remaining:
            raise StepFailed(
                "; ".join(remaining)
                + ": a worker died meanwhile, or the stalled check of a worker moved them "
                "back in; run redis-runbook queues recover-stale again"
            )
        return f"no stale job left in active in {len(queues)} queue(s)"

    return Step("re-count stale active jobs in every queue", run)
