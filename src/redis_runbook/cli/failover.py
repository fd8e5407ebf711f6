"""`redis-runbook failover [--to HOST:PORT] [--reconcile]`: Sentinel switchover or a
guarded promotion without Sentinel, then the BullMQ steps that follow a failover."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from redis_runbook.cli.context import globals_of
from redis_runbook.cli.procedure import PauseQueuesOption, UnderstoodOption, run_plan
from redis_runbook.cli.render import err
from redis_runbook.defaults import RECONCILE_MARGIN_S
from redis_runbook.errors import ConfigError


def follow_up(since: str) -> list[str]:
    """The BullMQ steps that apply after any failover."""
    return [
        "redis-runbook queues recover-stale   (jobs whose worker lost its lock in the switch)",
        f"redis-runbook queues reconstruct --since {since}   (jobs written to the old master "
        "but not yet replicated: PostgreSQL says what is pending)",
        "redis-runbook workers verify   (workers reconnected and consume)",
    ]


def failover(
    ctx: typer.Context,
    to: Annotated[
        str | None,
        typer.Option("--to", help="Without Sentinel: the replica to promote (HOST:PORT)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Promote --to although another replica is ahead.")
    ] = False,
    reconcile: Annotated[
        bool,
        typer.Option(
            "--reconcile",
            help="Then, as steps of the same plan on the new master: recover-stale (and "
            "reconstruct, if set up).",
        ),
    ] = False,
    gone: Annotated[
        bool,
        typer.Option(
            "--old-master-gone",
            help="Without Sentinel: the old master is gone for good (no fence through "
            "[service]); refused while its port accepts connections. Type GONE to confirm.",
        ),
    ] = False,
    understood: UnderstoodOption = False,
    pause_queues: PauseQueuesOption = False,
) -> None:
    """Sentinel: a planned switchover (SENTINEL FAILOVER) after checking quorum, a fit
    replica and that no failover runs; then verify the new master, the old one
    following it and the BullMQ queues. Without Sentinel: FAILOVER TO (master alive,
    nothing acknowledged lost) or, once the old master is fenced (stopped through
    [service], or --old-master-gone), REPLICAOF NO ONE on the most up-to-date replica
    (needs --i-understand-data-loss with --yes). The new roles are written to the
    config files. Type FAILOVER to confirm."""
    from redis_runbook.config import secrets
    from redis_runbook.procedures.context import ProcedureContext
    from redis_runbook.procedures.failover import plan_sentinel_failover
    from redis_runbook.procedures.promote import plan_promote

    options = globals_of(ctx)
    config = options.load().config
    # A secret source that fails is a configuration error (exit 2) as for every other
    # command, not a master that "does not answer" (a refusal, exit 3).
    target = config.target
    secrets.resolve(
        "target",
        env_var=target.password_env,
        file=target.password_file,
        command=target.password_command,
    )
    pctx = ProcedureContext(config)
    if config.target.sentinel is not None:
        if to is not None or gone:
            raise ConfigError(
                "--to and --old-master-gone are for targets without Sentinel: Sentinel picks "
                "the replica itself",
                "redis-runbook failover (set replica-priority to steer Sentinel's choice)",
            )
        plan = plan_sentinel_failover(pctx, reconcile=reconcile)
    else:
        plan = plan_promote(pctx, to, force, gone, reconcile)
    if pause_queues:
        from redis_runbook.procedures.maintenance import failover_nodes, with_paused_queues

        plan = with_paused_queues(pctx, plan, failover_nodes(config, to))
    started = time.time()
    run_plan(ctx, pctx, plan, understood)
    if options.dry_run or reconcile:
        return
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started - RECONCILE_MARGIN_S))
    err.print("next, for BullMQ:\n  " + "\n  ".join(follow_up(since)), markup=False)
