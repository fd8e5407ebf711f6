"""`redis-runbook checklist daily | weekly | monthly` (seed §6.4)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from redis_runbook.cli.context import globals_of
from redis_runbook.cli.render import out, print_json
from redis_runbook.defaults import PERIODS, Period

if TYPE_CHECKING:
    from redis_runbook.checklist import Checklist

app = typer.Typer(
    help="Prevention checklists (§6.4): automated items checked, manual ones listed.",
    no_args_is_help=True,
)
MARKS = {"OK": "[x]", "WARNING": "[!]", "CRITICAL": "[!!]", "UNKNOWN": "[?]", "MANUAL": "[ ]"}


def _show(checklist: Checklist) -> None:
    from rich.table import Table

    table = Table(title=f"{checklist.period} checklist — {checklist.target}", title_justify="left")
    for column in ("", "item", "status", "detail"):
        table.add_column(column, overflow="fold")
    for line in checklist.to_json()["items"]:
        detail = line["detail"] + (f"\nnext: {line['hint']}" if line["hint"] else "")
        cells = (MARKS[line["status"]], line["title"], line["status"], detail)
        table.add_row(*(Text(cell) for cell in cells))
    out.print(table)
    out.print(f"overall: {checklist.status.name}", markup=False)


def _run(ctx: typer.Context, period: Period, as_json: bool) -> None:
    from redis_runbook.checklist import run_checklist

    options = globals_of(ctx)
    checklist = run_checklist(period, options.load().config)
    if as_json or options.json:
        print_json(checklist.to_json())
    else:
        _show(checklist)
    raise typer.Exit(int(checklist.status))


def _command(period: Period) -> None:
    def command(
        ctx: typer.Context,
        json_output: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
    ) -> None:
        _run(ctx, period, json_output)

    command.__doc__ = {
        "daily": "Memory < 70 %, AOF writing, clients. Exit code: the worst item (0-3).",
        "weekly": "Slow log patterns, backup completion, fragmentation.",
        "monthly": "Restore drill, memory growth trend, Redis version vs the local package.",
    }[period]
    app.command(period)(command)


for _period in PERIODS:
    _command(_period)
