"""`redis-runbook perf report` (seed §3.3): slow log, latency, memory doctor,
fragmentation advice, blocked clients. Read-only."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from redis_runbook.cli.context import globals_of
from redis_runbook.cli.render import out, print_json

if TYPE_CHECKING:
    from rich.table import Table

    from redis_runbook.perf import PerfReport

app = typer.Typer(help="Performance: slow log, latency, fragmentation.", no_args_is_help=True)


def _when(unix: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(unix))


def _slowlog_table(report: PerfReport) -> Table:
    from rich.table import Table

    threshold = report.slowlog_threshold_us
    shown = f"> {threshold} µs" if threshold is not None else "threshold unknown"
    table = Table(
        title=f"SLOWLOG GET {len(report.slowlog)} of {report.slowlog_len} ({shown})",
        title_justify="left",
    )
    for name in ("id", "when (UTC)", "ms", "command", "client"):
        table.add_column(name, no_wrap=name != "command")
    for e in report.slowlog:
        client = " ".join(p for p in (e.client_addr, e.client_name) if p)
        table.add_row(  # Text: a command's arguments are data, not Rich markup
            str(e.id), _when(e.time), f"{e.duration_us / 1000:.2f}", Text(e.command), Text(client)
        )
    return table


def _latency_table(report: PerfReport) -> Table:
    from rich.table import Table

    threshold = report.latency_threshold_ms
    note = (
        "monitor off: CONFIG SET latency-monitor-threshold 100"
        if not threshold
        else (f">= {threshold} ms")
    )
    table = Table(title=f"LATENCY LATEST ({note})", title_justify="left")
    for name in ("event", "when (UTC)", "latest ms", "max ms"):
        table.add_column(name, no_wrap=True)
    for e in report.latency_events:
        table.add_row(e.event, _when(e.at), str(e.latest_ms), str(e.max_ms))
    return table


def render(report: PerfReport) -> None:
    """The human report: tables, the two doctors, fragmentation, blocked clients, advice."""
    out.print(Text(f"Performance report: {report.target}", style="bold"))
    if report.slowlog:
        out.print(_slowlog_table(report))
    else:
        out.print(f"SLOWLOG: empty ({report.slowlog_len or 0} entries)", markup=False)
    if report.latency_events:
        out.print(_latency_table(report))
    else:
        monitor = report.latency_threshold_ms
        state = f"monitor on, >= {monitor} ms" if monitor else "latency monitor is off"
        out.print(f"LATENCY LATEST: no events ({state})", markup=False)
    for title, text in (
        ("LATENCY DOCTOR", report.latency_doctor),
        ("MEMORY DOCTOR", report.memory_doctor),
    ):
        out.print(Text(title, style="bold"))
        out.print(text or "(no answer)", markup=False)
    out.print(Text("Fragmentation: ", style="bold") + Text(report.fragmentation))
    blocked = ", ".join(f"{c} {n}" for c, n in report.blocked_by_command.items()) or "none"
    out.print(
        Text("Blocked clients: ", style="bold")
        + Text(f"{report.blocked_total if report.blocked_total is not None else '?'} ({blocked})")
    )
    for name, why in report.denied.items():
        out.print(f"not available: {name}: {why}", markup=False)
    out.print(Text("Advice:", style="bold"))
    for line in report.advice or ["nothing stands out"]:
        out.print(f"  - {line}", markup=False)


@app.command("report")
def report(
    ctx: typer.Context,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """SLOWLOG GET 10, LATENCY LATEST + DOCTOR, MEMORY DOCTOR, fragmentation advice
    (active defrag or a restart window), blocked clients by command. Read-only."""
    from redis_runbook.perf import perf_report

    options = globals_of(ctx)
    result = perf_report(options.load().config)
    if json_output or options.json:
        print_json(result.to_json())
        return
    render(result)
