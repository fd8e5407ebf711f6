"""`redis-runbook recover ...`: the seed's recovery procedures (§3-§4)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from redis_runbook.cli.procedure import (
    PauseQueuesOption,
    UnderstoodOption,
    procedure_context,
    run_plan,
)

if TYPE_CHECKING:
    from redis_runbook.procedures.context import ProcedureContext
    from redis_runbook.procedures.engine import Plan

app = typer.Typer(
    help="Recovery procedures: plan shown, --dry-run, confirmation, journal.", no_args_is_help=True
)


def paused_if(pctx: ProcedureContext, plan: Plan, pause_queues: bool) -> Plan:
    """`plan` with the queues paused first and resumed last when --pause-queues."""
    if not pause_queues:
        return plan
    from redis_runbook.procedures.maintenance import with_paused_queues

    return with_paused_queues(pctx, plan)


@app.command("restart")
def restart(
    ctx: typer.Context,
    no_save: Annotated[
        bool, typer.Option("--no-save", help="Stop without saving (loses unsaved writes).")
    ] = False,
    verify_categories: Annotated[
        bool,
        typer.Option(
            "--verify-categories",
            help="Also count the keys per category before and after (two SCAN walks).",
        ),
    ] = False,
    pause_queues: PauseQueuesOption = False,
) -> None:
    """Seed §4.1: SHUTDOWN SAVE, start, wait until ready, verify PING and the keyspace
    (INFO keyspace; the keys are walked only when some went missing)."""
    from redis_runbook.procedures.restart import plan_restart

    pctx = procedure_context(ctx)
    plan = plan_restart(pctx, save=not no_save, verify_categories=verify_categories)
    run_plan(ctx, pctx, paused_if(pctx, plan, pause_queues))


@app.command("emergency-start")
def emergency_start(
    ctx: typer.Context,
    force: Annotated[
        bool, typer.Option("--force", help="Even though Redis is running (it is stopped first).")
    ] = False,
    understood: UnderstoodOption = False,
    pause_queues: PauseQueuesOption = False,
) -> None:
    """Seed §4.4: move the data dir aside (never deleted) and start Redis empty.
    Asks you to type EMERGENCY; automation needs --yes --i-understand-data-loss."""
    from redis_runbook.procedures.emergency import plan_emergency_start

    pctx = procedure_context(ctx)
    run_plan(ctx, pctx, paused_if(pctx, plan_emergency_start(pctx, force=force), pause_queues),
             understood)  # fmt: skip


@app.command("aof")
def aof(
    ctx: typer.Context,
    force: Annotated[
        bool, typer.Option("--force", help="Redis is running: stop it first (SHUTDOWN SAVE).")
    ] = False,
    understood: UnderstoodOption = False,
    pause_queues: PauseQueuesOption = False,
) -> None:
    """Seed §4.2/§3.4: check the AOF; repair its last file (after a copy aside) or fall
    back to dump.rdb (the AOF moved aside); start; verify; say what was lost."""
    from redis_runbook.procedures.aof import plan_aof

    pctx = procedure_context(ctx)
    run_plan(ctx, pctx, paused_if(pctx, plan_aof(pctx, force=force), pause_queues), understood)


@app.command("restore")
def restore(
    ctx: typer.Context,
    archive: Annotated[str, typer.Option("--archive", help="Archive name, or latest.")] = "latest",
    force: Annotated[
        bool, typer.Option("--force", help="Redis is running: stop it first.")
    ] = False,
    no_save: Annotated[
        bool, typer.Option("--no-save", help="Stop a running Redis without saving.")
    ] = False,
    verify_categories: Annotated[
        bool,
        typer.Option(
            "--verify-categories",
            help="Also count the keys per category after the load (one SCAN walk).",
        ),
    ] = False,
    understood: UnderstoodOption = False,
    pause_queues: PauseQueuesOption = False,
) -> None:
    """Seed §4.3: check the archive (integrity, redis-check-rdb/aof, RDB version), then
    stop, move the data dir aside, swap the archive in, start, verify the keys (INFO
    keyspace; walked per category only when they disagree), and write a provenance
    file. Asks you to type the archive name."""
    from redis_runbook.backup import make_backend
    from redis_runbook.procedures.restore import plan_restore

    pctx = procedure_context(ctx)
    backend = make_backend(pctx.config.backup)
    plan = plan_restore(
        pctx, backend, archive, save=not no_save, force=force, verify_categories=verify_categories
    )
    run_plan(ctx, pctx, paused_if(pctx, plan, pause_queues), understood)
