"""`redis-runbook recover oom` (seed §3.2): measure memory by category, purge
the rebuildable categories, report before/after and the permanent fix.
Registered on `recover.app` from cli/app.py."""

from __future__ import annotations

from typing import Annotated

import typer

from redis_runbook.cli.context import globals_of
from redis_runbook.cli.keys import BatchOption, RateOption
from redis_runbook.cli.procedure import UnderstoodOption, procedure_context, run_plan
from redis_runbook.cli.progress import walk_progress
from redis_runbook.defaults import DEFAULT_BATCH, DEFAULT_SAMPLE


def oom(
    ctx: typer.Context,
    category: Annotated[
        list[str] | None,
        typer.Option(
            "--category",
            help="Purge this category (repeatable; default: every rebuildable one).",
        ),
    ] = None,
    include_critical: Annotated[
        list[str] | None,
        typer.Option(
            "--include-critical",
            help="Also purge this NON-rebuildable category (repeatable); you must type its name.",
        ),
    ] = None,
    understood: UnderstoodOption = False,
    sample: Annotated[
        int, typer.Option("--sample", min=0, help="Keys per category measured with MEMORY USAGE.")
    ] = DEFAULT_SAMPLE,
    batch: BatchOption = DEFAULT_BATCH,
    max_ops_per_s: RateOption = None,
    purge_anyway: Annotated[
        bool,
        typer.Option(
            "--purge-anyway",
            help="Purge even when the categories hold too little to get under maxmemory.",
        ),
    ] = False,
) -> None:
    """Seed §3.2 (OOM): memory by category, purge cache/ratelimit (whatever the
    config marks rebuildable) with SCAN + UNLINK, prove writes work again, print
    the maxmemory / container limit to set. When the categories to purge hold too
    little to get under maxmemory, it says so and what would help, and purges
    nothing unless --purge-anyway."""
    from redis_runbook.procedures.oom import plan_oom

    options = globals_of(ctx)
    pctx = procedure_context(ctx)
    with walk_progress(not options.json) as progress:
        plan = plan_oom(
            pctx,
            category or None,
            include_critical or [],
            sample=sample,
            batch=batch,
            max_ops_per_s=max_ops_per_s,
            progress=progress,
            purge_anyway=purge_anyway,
        )
        run_plan(ctx, pctx, plan, understood)
