"""`redis-runbook monitor [--once]`: alerts by email and webhook (seed §6.2)."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from redis_runbook.cli.context import globals_of
from redis_runbook.cli.render import err, out

if TYPE_CHECKING:
    from redis_runbook.monitoring.monitor import CycleReport


def _line(report: CycleReport) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(report.at))
    parts = [f"{stamp} {report.target} {report.status.name}"]
    if report.firing:
        parts.append("firing: " + ", ".join(report.firing))
    parts += [f"alert {n.kind} {n.key}" for n in report.notifications]
    parts += [f"NOT DELIVERED to {d.sink}: {d.error}" for d in report.deliveries if not d.ok]
    if report.queued:
        parts.append(f"{report.queued} notification(s) queued for retry")
    parts += report.notes
    return "; ".join(parts)


def monitor(
    ctx: typer.Context,
    once: Annotated[
        bool, typer.Option("--once", help="One cycle, then exit (for cron: */5 * * * *).")
    ] = False,
    interval: Annotated[
        float | None,
        typer.Option("--interval", min=1, help="Seconds between cycles ([monitor] interval)."),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON document per cycle (JSON Lines).")
    ] = False,
) -> None:
    """Watch the target: health and queue checks, alerts that fire once, repeat at
    the repeat interval and resolve. `--once` exits 1 when a notification could not be
    delivered (cron then mails its output), else 0."""
    from redis_runbook.monitoring.monitor import Monitor

    options = globals_of(ctx)
    config = options.load().config
    if interval is not None:
        config.monitor.interval_seconds = interval
    logging.basicConfig(
        level=logging.INFO if options.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )

    as_json = json_output or options.json

    def show(report: CycleReport) -> None:
        for line in report.errors:  # the monitor's own trouble: stderr, one line each
            err.print(f"ERROR: {line}", markup=False, highlight=False, soft_wrap=True)
        if as_json:
            out.print(json.dumps(report.to_json()), markup=False, highlight=False, soft_wrap=True)
        else:
            out.print(_line(report), markup=False, highlight=False, soft_wrap=True)

    with Monitor(config) as watcher:
        if not watcher.sinks:
            err.print(
                "no [alerts] smtp or webhooks configured: alerts are only printed", markup=False
            )
        if once:
            report = watcher.cycle()
            show(report)
            raise typer.Exit(1 if report.delivery_failed else 0)
        stop = threading.Event()

        def shut_down(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, shut_down)
        signal.signal(signal.SIGINT, shut_down)
        watcher.run_forever(stop, show)
