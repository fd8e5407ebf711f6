"""`redis-runbook queues reconstruct`: rebuild BullMQ queues from PostgreSQL (seed
§5.3) as a plan: check and count (read-only), show, --dry-run, y/N, one journaled
step per source."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text

from redis_runbook.cli.context import globals_of
from redis_runbook.cli.procedure import ask_confirmation, plan_document, results_document, show_plan
from redis_runbook.cli.progress import walk_progress
from redis_runbook.cli.render import err, out, print_json
from redis_runbook.errors import ConfigError
from redis_runbook.procedures.context import ProcedureContext
from redis_runbook.procedures.engine import Plan, StepResult

if TYPE_CHECKING:
    from redis_runbook.procedures.reconstruct import Report

SINCE_HINT = (
    "give an ISO 8601 time (2026-11-26T03:00:00Z; no zone means UTC) or an age (90m, 6h, 2d)"
)
_AGE = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(value: str | None, now: datetime | None = None) -> datetime | None:
    """`--since` as an aware datetime: ISO 8601 (naive means UTC) or an age such as
    `6h` (that long before now). ConfigError (exit 2) for anything else."""
    if value is None:
        return None
    age = _AGE.fullmatch(value.strip())
    if age:
        delta = timedelta(**{_UNITS[age.group(2)]: int(age.group(1))})
        return (now or datetime.now(UTC)) - delta
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(f"--since: expected a time, got {value!r}", SINCE_HINT) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _step_line(result: StepResult) -> None:
    mark = Text("  ok  ", style="green") if result.ok else Text("  FAIL ", style="bold red")
    out.print(
        mark + Text(f"{result.index}. {result.title}: {result.message} ({result.seconds:.1f} s)")
    )


def _scans(report: Report) -> list[dict[str, Any]]:
    return [
        {
            "source": s.source,
            "selected": s.selected,
            "columns": list(s.columns),
            "first_job_id": s.first_id,
            "last_job_id": s.last_id,
            "duplicate_rows": s.duplicate_rows,
            "duplicate_ids": list(s.duplicate_ids),
            "seconds": round(s.seconds, 3),
        }
        for s in report.scans.values()
    ]


def execute(ctx: typer.Context, pctx: ProcedureContext, plan: Plan, report: Report) -> None:
    """Show (or print as JSON), stop on --dry-run, confirm, run with progress."""
    options = globals_of(ctx)
    if options.dry_run:
        if options.json:
            print_json({"dry_run": True, "plan": plan_document(plan), "scans": _scans(report)})
            return
        show_plan(plan)
        out.print("dry run: nothing was changed (rows counted and checked only)", markup=False)
        return
    if not options.json:
        show_plan(plan)
    ask_confirmation(ctx, plan)
    runner = pctx.runner()
    if not options.json:
        runner.on_step = _step_line
    with walk_progress(not options.json) as progress:
        report.progress = progress
        results = runner.execute(plan)
    if options.json:
        print_json(
            results_document(plan, results)
            | {
                "scans": _scans(report),
                "sources": [f.to_json() for f in report.figures.values()],
            }
        )
        return
    added = sum(f.added for f in report.figures.values())
    present = sum(f.already_present for f in report.figures.values())
    repeated = sum(f.duplicates.count for f in report.figures.values())
    err.print(
        f"{plan.procedure}: done, {len(results)} source(s): {added} added, {present} already "
        "present"
        + (f", {repeated} duplicate rows (first row of each id kept)" if repeated else ""),
        markup=False,
    )


def reconstruct(
    ctx: typer.Context,
    source: Annotated[
        list[str] | None,
        typer.Option("--source", "-s", help="Only this [[reconstruct.sources]] name (repeatable)."),
    ] = None,
    queue: Annotated[
        list[str] | None,
        typer.Option("--queue", "-q", help="Only the sources feeding this queue (repeatable)."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Passed to the SQL as %(since)s: rows created after a failover "
            "(ISO 8601, or an age: 90m, 6h, 2d). Default: the epoch (everything).",
        ),
    ] = None,
    chunk: Annotated[
        int | None,
        typer.Option("--chunk", min=1, max=1000, help="Jobs per addBulk (default: config, 1000)."),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Proceed although maxmemory-policy is not noeviction."),
    ] = False,
) -> None:
    """Re-enqueue the work PostgreSQL says is pending (seed §5.3, without its LIMIT
    1000): every row of each source's SELECT becomes one BullMQ job with a
    deterministic id, added with the official bullmq addBulk in row order. Re-runs
    add only what is missing. Plan first: --dry-run counts and checks the rows."""
    options = globals_of(ctx)
    config = options.load().config
    if chunk is not None:
        config.reconstruct.chunk_size = chunk
    # psycopg and the reconstruct machinery load only for this command (slow imports).
    from redis_runbook.procedures.reconstruct import Options, Report, plan_reconstruct

    chosen = Options(
        sources=source or [], queues=queue or [], since=parse_since(since), force=force
    )
    pctx = ProcedureContext(config)
    report = Report()
    with walk_progress(not options.json) as progress:
        report.progress = progress
        plan = plan_reconstruct(pctx, chosen, report)
    report.progress = None
    execute(ctx, pctx, plan, report)
