"""`redis-runbook queues reconstruct`: rebuild BullMQ queues from PostgreSQL (seed
§5.3) as a plan: check and count (read-only), show, --dry-run, y/N, one journaled
step per source."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from redis_runbook.cli.context import globals_of
from redis_runbook.cli.procedure import run_plan
from redis_runbook.cli.progress import walk_progress
from redis_runbook.errors import ConfigError

SINCE_HINT = (
    "give an ISO 8601 time (2026-11-26T03:00:00Z; no zone means UTC) or an age (90m, 6h, 2d)"
)
_AGE = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(
    value: str | None, now: datetime | None = None, option: str = "--since"
) -> datetime | None:
    """`--since` (or the time option named `option`) as an aware datetime: ISO 8601
    (naive means UTC) or an age such as `6h` (that long before now). ConfigError
    (exit 2) for anything else."""
    if value is None:
        return None
    age = _AGE.fullmatch(value.strip())
    if age:
        delta = timedelta(**{_UNITS[age.group(2)]: int(age.group(1))})
        return (now or datetime.now(UTC)) - delta
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(f"{option}: expected a time, got {value!r}", SINCE_HINT) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


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
    from redis_runbook.procedures.context import ProcedureContext
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

    @contextlib.contextmanager
    def bars() -> Iterator[None]:
        with walk_progress(not options.json) as progress:
            report.progress = progress
            yield

    run_plan(ctx, pctx, plan, executing=bars)
