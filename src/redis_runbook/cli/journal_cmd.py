"""`redis-runbook journal [--tail N]`: what procedures did, newest last."""

from __future__ import annotations

from typing import Annotated

import typer

from redis_runbook.cli.context import globals_of
from redis_runbook.cli.render import out, print_json


def journal(
    ctx: typer.Context,
    tail: Annotated[int, typer.Option("--tail", min=1, help="How many entries.")] = 50,
) -> None:
    """Show the journal: every step every procedure took, with its outcome."""
    from redis_runbook.journal import Journal

    options = globals_of(ctx)
    state_dir = options.load().config.runbook.state_dir
    entries = Journal.in_dir(state_dir).tail(tail)
    if options.json:
        print_json(entries)
        return
    if not entries:
        out.print(f"the journal in {state_dir} is empty", markup=False)
    for e in entries:
        out.print(
            f"{e['time']}  {e['procedure']}  {e['step']}: {e['outcome']}"
            + (f" — {e['message']}" if e.get("message") else ""),
            markup=False,
        )
