"""`redis-runbook health`: seed §2.1 + the §6.1 thresholds, Nagios exit codes."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from redis_runbook.cli import render
from redis_runbook.cli.context import globals_of

if TYPE_CHECKING:
    from redis_runbook.checks import HealthReport
    from redis_runbook.config import Config


def _render(report: HealthReport, as_json: bool, lines: bool = False) -> None:
    if as_json:
        render.print_json(report.to_json(), compact=lines)
    else:
        render.out.print(render.health_table(report))


def _watch(config: Config, interval: float, as_json: bool) -> HealthReport:
    from redis_runbook.checks import run_health

    report = run_health(config)
    if as_json or not render.out.is_terminal:
        try:
            while True:
                _render(report, as_json, lines=True)
                time.sleep(interval)
                report = run_health(config)
        except KeyboardInterrupt:
            return report
    from rich.live import Live

    try:
        with Live(render.health_table(report), console=render.out, auto_refresh=False) as live:
            while True:
                time.sleep(interval)
                report = run_health(config)
                live.update(render.health_table(report), refresh=True)
    except KeyboardInterrupt:
        pass
    return report


def health(
    ctx: typer.Context,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
    watch: Annotated[
        float | None,
        typer.Option("--watch", min=0.5, help="Refresh every N seconds until Ctrl-C."),
    ] = None,
) -> None:
    """Check Redis health: latency, memory, eviction policy, clients, persistence,
    fragmentation, loading, role, keyspace. Exit code = worst status:
    0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN."""
    from redis_runbook.checks import run_health

    options = globals_of(ctx)
    as_json = json_output or options.json
    config = options.load().config
    if watch:
        report = _watch(config, watch, as_json)
    else:
        report = run_health(config)
        _render(report, as_json)
    raise typer.Exit(int(report.status))
