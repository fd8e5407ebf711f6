"""Shared CLI flow for every mutating command: show the plan, stop there on
--dry-run, confirm, execute with live progress, summarise — or refuse."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.text import Text

from redis_runbook.cli.context import globals_of
from redis_runbook.cli.render import err, out, print_json
from redis_runbook.procedures.context import ProcedureContext
from redis_runbook.procedures.engine import Plan, StepResult, confirm

UnderstoodOption = Annotated[
    bool,
    typer.Option(
        "--i-understand-data-loss",
        help="With --yes: answer the typed confirmation the plan asks for.",
    ),
]


def plan_document(plan: Plan) -> dict[str, Any]:
    """The plan as JSON."""
    return {
        "procedure": plan.procedure,
        "target": plan.target,
        "confirm": plan.confirm.value,
        "notes": plan.notes,
        "steps": [{"title": s.title, "destructive": s.destructive} for s in plan.steps],
    }


def show_plan(plan: Plan) -> None:
    """The plan as the operator reads it before anything happens."""
    out.print(Text(f"Plan: {plan.procedure} on {plan.target}", style="bold"))
    for note in plan.notes:
        out.print(f"  note: {note}", markup=False)
    for index, step in enumerate(plan.steps, 1):
        flag = Text(" [destructive]", style="bold red") if step.destructive else Text("")
        out.print(Text(f"  {index}. {step.title}") + flag)


def _progress(result: StepResult) -> None:
    mark = Text("  ok  ", style="green") if result.ok else Text("  FAIL ", style="bold red")
    out.print(
        mark + Text(f"{result.index}. {result.title}: {result.message} ({result.seconds:.1f} s)")
    )


def ask_confirmation(ctx: typer.Context, plan: Plan, extra_ok: bool = True) -> None:
    """The plan's confirmation, asked on the terminal (or answered by --yes)."""
    confirm(
        plan,
        yes=globals_of(ctx).yes,
        interactive=sys.stdin.isatty(),
        ask=lambda question: str(typer.prompt(question, default="", show_default=False, err=True)),
        extra_ok=extra_ok,
    )


def results_document(plan: Plan, results: list[StepResult]) -> dict[str, Any]:
    """The executed plan as JSON: the plan and one entry per step run."""
    return {
        "plan": plan_document(plan),
        "results": [
            {"step": r.title, "ok": r.ok, "message": r.message, "seconds": r.seconds}
            for r in results
        ],
    }


def run_plan(ctx: typer.Context, pctx: ProcedureContext, plan: Plan, extra_ok: bool = True) -> None:
    """Dry-run, confirm and execute `plan` (errors propagate to the CLI's handler)."""
    options = globals_of(ctx)
    if options.json:
        if options.dry_run:
            print_json({"dry_run": True, "plan": plan_document(plan)})
            return
    else:
        show_plan(plan)
        if options.dry_run:
            out.print("dry run: nothing was changed", markup=False)
            return
    ask_confirmation(ctx, plan, extra_ok)
    runner = pctx.runner()
    if not options.json:
        runner.on_step = _progress
    results = runner.execute(plan)
    if options.json:
        print_json(results_document(plan, results))
    else:
        err.print(f"{plan.procedure}: done, {len(results)} steps", markup=False)
