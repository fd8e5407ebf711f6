"""`redis-runbook queues ...`: BullMQ queue recovery (seed §5)."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="BullMQ queues: status, stale-job recovery, reconstruction (seed §5).",
    no_args_is_help=True,
)
