"""`redis-runbook queues failed` and `queues retry-failed` (issue 16): what failed
during the incident, grouped by normalised reason, and a plan that retries the jobs
that failed because Redis did."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from redis_runbook.cli.context import globals_of
from redis_runbook.cli.procedure import run_plan
from redis_runbook.cli.render import out, print_json
from redis_runbook.errors import ConfigError

if TYPE_CHECKING:
    import re

    from redis_runbook.bullmq.failed import FailureGroup

QueueOption = Annotated[
    list[str] | None, typer.Option("--queue", "-q", help="Only this queue (repeatable).")
]
SinceOption = Annotated[
    str | None,
    typer.Option("--since", help="Failed at or after (ISO 8601, or an age: 90m, 6h, 2d)."),
]
UntilOption = Annotated[
    str | None,
    typer.Option("--until", help="Failed at or before (ISO 8601, or an age: 90m, 6h, 2d)."),
]


def time_range(since: str | None, until: str | None) -> tuple[int | None, int | None]:
    """--since/--until as ms since the epoch; ConfigError (exit 2) for a bad time or
    an empty range."""
    from redis_runbook.cli.reconstruct import SINCE_HINT, parse_since

    low = parse_since(since)
    high = parse_since(until, option="--until")
    if low is not None and high is not None and low > high:
        raise ConfigError(
            f"--since {since} is after --until {until}: no failure can be in between",
            SINCE_HINT,
        )
    return (
        None if low is None else int(low.timestamp() * 1000),
        None if high is None else int(high.timestamp() * 1000),
    )


def reason_pattern(reason: str | None) -> re.Pattern[str] | None:
    """--reason compiled; ConfigError (exit 2) naming the regex and what is wrong."""
    import re

    if reason is None:
        return None
    try:
        return re.compile(reason)
    except re.error as exc:
        raise ConfigError(
            f"--reason: invalid regular expression {reason!r}: {exc}",
            "give a Python regular expression, e.g. --reason 'OOM|Connection is closed' "
            "(the groups: redis-runbook queues failed)",
        ) from None


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _group_lines(groups: list[FailureGroup]) -> list[str]:
    lines = []
    for g in groups:
        names = ", ".join(f"{n} {c}" for n, c in g.names.most_common())
        lines += [
            f"  {g.count:>6}  {g.reason}",
            f"          first {_when(g.first_ms)}, last {_when(g.last_ms)}; names: {names}",
        ]
    return lines


def failed(
    ctx: typer.Context,
    queue: QueueOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Failed jobs grouped by normalised failedReason (ids, numbers, hosts folded), with
    count, first and last failure and job names per group. Read-only, safe on a
    replica: SCAN to find the queues, ZRANGEBYSCORE in pages."""
    from redis_runbook.bullmq.failed import group_failed, read_failed
    from redis_runbook.cli.queues import queue_session

    options = globals_of(ctx)
    low, high = time_range(since, until)
    with queue_session(options.load().config, queue) as (client, found, where):
        per_queue = {q: read_failed(client, q, low, high) for q in found.queues}
    if json_output or options.json:
        document: dict[str, Any] = {
            "target": where,
            "since_ms": low,
            "until_ms": high,
            "queues": [
                {
                    "queue": q.display,
                    "failed": len(jobs),
                    "groups": [g.to_json() for g in group_failed(jobs)],
                }
                for q, jobs in per_queue.items()
            ],
        }
        print_json(document)
        return
    window = "".join(
        [f" since {_when(low)}" if low is not None else "",
         f" until {_when(high)}" if high is not None else ""]
    )  # fmt: skip
    lines = [f"Failed BullMQ jobs{window}: {where}"]
    for q, jobs in per_queue.items():
        lines.append(f"{q.display}: {len(jobs)} failed")
        lines += _group_lines(group_failed(jobs))
    total = sum(len(jobs) for jobs in per_queue.values())
    if total:
        lines.append(
            "Retry the ones Redis caused: redis-runbook queues retry-failed --reason REGEX "
            "(--dry-run first)"
        )
    for line in lines:
        out.print(line, markup=False, soft_wrap=True)


def retry_failed(
    ctx: typer.Context,
    queue: QueueOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    reason: Annotated[
        str | None,
        typer.Option(
            "--reason",
            help="Only failures whose failedReason (raw or as `queues failed` shows it) "
            "matches this regular expression (searched, case-sensitive).",
        ),
    ] = None,
    name: Annotated[
        list[str] | None, typer.Option("--name", help="Only jobs of this name (repeatable).")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", help="At most this many jobs, oldest failure first.")
    ] = None,
) -> None:
    """Move the chosen failed jobs back to be processed, as BullMQ v5's job.retry()
    does (into `paused` for a paused queue, a prioritized job back to `prioritized`,
    the marker and `waiting` events; attemptsMade kept). A plan: counts per queue and
    reason, --dry-run, y/N, journal, lock; script calls of at most ~10 ms. Refused on
    a replica."""
    from redis_runbook.cli.queues import queue_session
    from redis_runbook.procedures.context import ProcedureContext
    from redis_runbook.procedures.retry_failed import Selection, plan_retry_failed

    if limit is not None and limit < 1:
        raise ConfigError(
            f"--limit: expected a number of jobs of at least 1, got {limit}",
            "give --limit N with N >= 1, or leave it out to retry every chosen job",
        )
    low, high = time_range(since, until)
    pattern = reason_pattern(reason)
    options = globals_of(ctx)
    config = options.load().config
    with queue_session(config, queue) as (_client, found, _where):
        queues = found.queues
    pctx = ProcedureContext(config)
    selection = Selection(low, high, pattern, list(name or []), limit)
    run_plan(ctx, pctx, plan_retry_failed(pctx, queues, selection))
