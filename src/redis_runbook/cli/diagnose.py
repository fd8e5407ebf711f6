"""`redis-runbook diagnose`: seed §2.3's decision tree and §3's scenarios, walked
automatically. Read-only. Exit 0 healthy, 1 degraded only (C), 2 down / OOM /
corrupt (A, B or D), 3 cannot tell (credentials refused)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from redis_runbook.cli.context import globals_of
from redis_runbook.cli.render import STATUS_STYLE, out, print_json
from redis_runbook.status import Status

if TYPE_CHECKING:
    from rich.panel import Panel

    from redis_runbook.diagnose.engine import Diagnosis
    from redis_runbook.diagnose.scenario import Scenario


def scenario_panel(scenario: Scenario) -> Panel:
    """One scenario: summary, evidence lines, advice, and the command to run next."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table

    from redis_runbook.diagnose.scenario import SEED_SECTIONS

    body = Table.grid(padding=(0, 1))
    body.add_column(style="bold", no_wrap=True)
    body.add_column()
    body.add_row("what", Text(scenario.summary))
    if scenario.files:
        body.add_row("files", Text(", ".join(scenario.files)))
    for index, line in enumerate(scenario.evidence):
        body.add_row("evidence" if index == 0 else "", Text(line))
    if scenario.advice:
        body.add_row("advice", Text(scenario.advice))
    next_line = Text("NEXT: ", style="bold") + Text(scenario.next_command, style="bold cyan")
    title = (
        f"Scenario {scenario.code} ({scenario.name}, seed {SEED_SECTIONS[scenario.code]}): "
        f"{scenario.cause}"
    )
    return Panel(
        Group(body, Text(""), next_line),
        title=Text(title, style=STATUS_STYLE[scenario.status]),
        title_align="left",
        expand=False,
    )


def render(diagnosis: Diagnosis) -> None:
    """The human report: a header line, one panel per scenario, notes."""
    ev = diagnosis.evidence
    status = diagnosis.status
    state = ev.state
    header = Text(f"Redis diagnosis: {ev.snapshot.target} — ")
    header += Text(status.name, style=STATUS_STYLE[status])
    out.print(header)
    pid = f" pid {state.pid}" if state.pid else ""
    detail = f" ({state.detail})" if state.detail and state.detail != pid.strip() else ""
    answers = "answers" if ev.snapshot.reachable else "does not answer"
    out.print(
        f"service: {state.state.value}{pid}{detail}; the server {answers}; "
        f"{diagnosis.elapsed_ms:.0f} ms",
        markup=False,
    )
    if not diagnosis.scenarios and status is Status.OK:
        out.print(Text("No scenario of seed §3 applies: Redis looks healthy.", style="green"))
    for scenario in diagnosis.scenarios:
        out.print(scenario_panel(scenario))
    for note in diagnosis.notes:
        out.print(Text("note: ", style="bold") + Text(note))


def diagnose(
    ctx: typer.Context,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
    check_timeout: Annotated[
        float,
        typer.Option(
            "--check-timeout",
            min=0,
            max=3600,
            help="Seconds allowed for each offline redis-check-aof/rdb run on a down "
            "server (0: skip them).",
        ),
    ] = 10.0,
) -> None:
    """Diagnose Redis (seed §2.3): down (A), out of memory (B), degraded (C), corrupt
    data files (D) — with the evidence and the exact command to run next.
    Read-only. Exit 0 healthy, 1 degraded only, 2 any of A/B/D, 3 cannot tell."""
    from redis_runbook.diagnose.engine import diagnose as run_diagnose

    options = globals_of(ctx)
    config = options.load().config
    diagnosis = run_diagnose(config, tool_timeout=check_timeout)
    if json_output or options.json:
        print_json(diagnosis.to_json())
    else:
        render(diagnosis)
    raise typer.Exit(diagnosis.exit_code)
