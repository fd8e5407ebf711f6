"""Shared CLI flow for every mutating command: show the plan, stop there on
--dry-run, confirm, execute with live progress, summarise — or refuse."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text

from redis_runbook.cli.context import globals_of
from redis_runbook.cli.render import err, out, print_json

if TYPE_CHECKING:
    from redis_runbook.procedures.context import ProcedureContext
    from redis_runbook.procedures.engine import Plan, StepResult

UnderstoodOption = Annotated[
    bool,
    typer.Option(
        "--i-understand-data-loss",
        help="With --yes: answer the typed confirmation the plan asks for.",
    ),
]

PauseQueuesOption = Annotated[
    bool,
    typer.Option(
        "--pause-queues",
        help="Pause the running BullMQ v5 queues first (as queues pause) and resume them "
        "after the verification, also when a step fails.",
    ),
]


def procedure_context(ctx: typer.Context, read_only: bool = False) -> ProcedureContext:
    """The ProcedureContext of the configured target (the config loaded now)."""
    from redis_runbook.procedures.context import ProcedureContext

    return ProcedureContext(globals_of(ctx).load().config, read_only=read_only)


def _plan_document(plan: Plan) -> dict[str, Any]:
    """The plan as JSON."""
    return {
        "procedure": plan.procedure,
        "target": plan.target,
        "confirm": plan.confirm.value,
        "notes": plan.notes,
        "steps": [{"title": s.title, "destructive": s.destructive} for s in plan.steps],
    }


def _show_plan(plan: Plan) -> None:
    """The plan as the operator reads it before anything happens."""
    out.print(Text(f"Plan: {plan.procedure} on {plan.target}", style="bold"))
    for note in plan.notes:
        out.print(f"  note: {note}", markup=False)
    for index, step in enumerate(plan.steps, 1):
        flag = Text(" [destructive]", style="bold red") if step.destructive else Text("")
        if step.always:
            flag += Text(" (also after a failure)")
        out.print(Text(f"  {index}. {step.title}") + flag)


def _progress(result: StepResult) -> None:
    mark = Text("  ok  ", style="green") if result.ok else Text("  FAIL ", style="bold red")
    out.print(
        mark + Text(f"{result.index}. {result.title}: {result.message} ({result.seconds:.1f} s)")
    )


def _ask_confirmation(ctx: typer.Context, plan: Plan, understood: bool = False) -> None:
    """The plan's confirmation, asked on the terminal (or answered by --yes)."""
    from redis_runbook.procedures.engine import confirm

    confirm(
        plan,
        yes=globals_of(ctx).yes,
        interactive=sys.stdin.isatty(),
        ask=lambda question: str(typer.prompt(question, default="", show_default=False, err=True)),
        understood=understood,
    )


def _results_document(plan: Plan, results: list[StepResult]) -> dict[str, Any]:
    """The executed plan as JSON: the plan and one entry per step run."""
    return {
        "plan": _plan_document(plan),
        "results": [
            {"step": r.title, "ok": r.ok, "message": r.message, "seconds": r.seconds}
            for r in results
        ],
    }


def run_plan(
    ctx: typer.Context,
    pctx: ProcedureContext,
    plan: Plan,
    understood: bool = False,
    executing: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
) -> None:
    """Dry-run, confirm and execute `plan` (errors propagate to the CLI's handler);
    the plan's cleanup runs whatever happens. `understood`: --i-understand-data-loss;
    `executing` wraps the steps once confirmed (e.g. their progress bars, which must
    not be drawn over the confirmation prompt)."""
    try:
        _run_plan(ctx, pctx, plan, understood, executing)
    finally:
        plan.finish()


def _run_plan(
    ctx: typer.Context,
    pctx: ProcedureContext,
    plan: Plan,
    understood: bool,
    executing: Callable[[], AbstractContextManager[object]],
) -> None:
    options = globals_of(ctx)
    extra = plan.extra or dict
    if options.json:
        if options.dry_run:
            print_json({"dry_run": True, "plan": _plan_document(plan)} | extra())
            return
    else:
        _show_plan(plan)
        if options.dry_run:
            out.print("dry run: nothing was changed", markup=False)
            return
    _ask_confirmation(ctx, plan, understood)
    runner = pctx.runner()
    if not options.json:
        runner.on_step = _progress
    with executing():
        results = runner.execute(plan)
    if options.json:
        print_json(_results_document(plan, results) | extra())
    elif plan.summary is not None:
        err.print(plan.summary(), markup=False)
    else:
        err.print(f"{plan.procedure}: done, {len(results)} steps", markup=False)
