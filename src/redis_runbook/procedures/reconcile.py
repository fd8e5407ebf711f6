"""`failover --reconcile`: the BullMQ steps that follow a failover, as the last steps
of the failover's own plan (shown with it, confirmed with it, journaled like its
other steps), aimed at the new master:

1. stale active jobs back to wait (`queues recover-stale`: their workers lost their
   locks in the switch);
2. when `[[reconstruct.sources]]` are configured, the jobs PostgreSQL says are
   pending since a little before the switch (`queues reconstruct --since`: written
   to the old master and never replicated).

Each runs its own plan's steps inside one step of the failover, which holds the lock
and whose confirmation covered them. A recover-stale that its own pre-flight refuses
(an evicting server) or that finds no queue says so and the failover still counts as
done; a reconstruction that fails fails the step (the failover before it is done)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from redis_runbook.config import Config
from redis_runbook.defaults import RECONCILE_MARGIN_S
from redis_runbook.errors import Refused
from redis_runbook.procedures.context import ProcedureContext
from redis_runbook.procedures.engine import Plan, Step
from redis_runbook.target import target_at


def reconcile_steps(config: Config, new_master: str | None) -> list[Step]:
    """The steps, for the master at `new_master` (HOST:PORT of the promoted replica;
    None for a Sentinel target, whose clients find the new master themselves)."""
    aimed = config
    if new_master is not None:
        aimed = config.model_copy(update={"target": target_at(config.target, new_master)})
    where = new_master or "the new master"
    steps = [Step(f"recover stale active jobs on {where}", lambda: recover_stale(aimed))]
    if config.reconstruct.sources:
        since = datetime.now(UTC) - timedelta(seconds=RECONCILE_MARGIN_S)
        steps.append(
            Step(
                f"reconstruct the jobs PostgreSQL says are pending since "
                f"{since:%Y-%m-%dT%H:%M:%SZ} on {where}",
                lambda: reconstruct(aimed, since),
                on_failure=f"redis-runbook queues reconstruct --since {since:%Y-%m-%dT%H:%M:%SZ}",
            )
        )
    return steps


def with_reconcile(plan: Plan, config: Config, new_master: str | None) -> Plan:
    """`plan` with the reconcile steps last and what they do in its notes."""
    plan.steps += reconcile_steps(config, new_master)
    plan.notes += reconcile_notes(config)
    return plan


def reconcile_notes(config: Config) -> list[str]:
    """What --reconcile adds to the failover's plan."""
    notes = ["then, for BullMQ: stale active jobs back to wait on the new master"]
    if config.reconstruct.sources:
        notes.append(
            f"then the jobs PostgreSQL says are pending since {RECONCILE_MARGIN_S // 60} "
            "minutes before the switch"
        )
    else:
        notes.append("no [[reconstruct.sources]] configured: no reconstruction from PostgreSQL")
    return notes


def _context(config: Config) -> ProcedureContext:
    # The failover that runs these steps holds the target's lock: not refused by it.
    return ProcedureContext(config, read_only=True)


def _inline(plan: Plan) -> str:
    """Run `plan`'s steps in order inside one step of the failover; the last one's
    sentence. A step that fails raises (the failover's runner reports it)."""
    said = "nothing to do"
    try:
        for step in plan.steps:
            said = step.action()
            if step.check is not None:
                step.check()
    finally:
        plan.finish()
    return said


def recover_stale(config: Config) -> str:
    """`queues recover-stale` on every queue, with its default options."""
    from redis_runbook.bullmq.discovery import discover
    from redis_runbook.procedures.stale import Options, plan_recover_stale

    ctx = _context(config)
    client = ctx.client(decode=False)
    try:
        queues = discover(client, config.bullmq.prefixes, config.bullmq.layout).queues
    finally:
        client.close()
    if not queues:
        return "no BullMQ queues: nothing to recover"
    try:
        plan = plan_recover_stale(ctx, queues, Options())
    except Refused as exc:
        return f"refused by its pre-flight: {exc.message}"
    return _inline(plan)


def reconstruct(config: Config, since: datetime) -> str:
    """`queues reconstruct --since` over every configured source."""
    from redis_runbook.procedures.reconstruct import Options, Report, plan_reconstruct

    report = Report()
    _inline(plan_reconstruct(_context(config), Options(since=since), report))
    return report.summary()
