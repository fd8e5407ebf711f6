"""`redis-runbook queues ...`: BullMQ queue recovery (seed §5)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Annotated

import redis
import typer
from rich.table import Table

from redis_runbook.bullmq.counts import QueueCounts, queue_counts
from redis_runbook.bullmq.discovery import Discovery, discover, select
from redis_runbook.bullmq.stale import BATCH
from redis_runbook.cli.context import globals_of
from redis_runbook.cli.procedure import UnderstoodOption, run_plan
from redis_runbook.cli.render import out, print_json
from redis_runbook.config import Config
from redis_runbook.errors import UnknownName
from redis_runbook.procedures.context import ProcedureContext
from redis_runbook.procedures.stale import Options as StaleOptions
from redis_runbook.procedures.stale import plan_recover_stale
from redis_runbook.target import classify, connect, make_client, target_display
from redis_runbook.units import format_duration

app = typer.Typer(
    help="BullMQ queues: status, stale-job recovery, reconstruction (seed §5).",
    no_args_is_help=True,
)

QueueOption = Annotated[
    list[str] | None, typer.Option("--queue", "-q", help="Only this queue (repeatable).")
]


def discovered(config: Config, client: redis.Redis, names: list[str] | None) -> Discovery:
    """Discover the queues and keep the ones named; UnknownName (exit 2) for a name
    that is not a queue, or when no queue exists under the prefixes."""
    found = discover(client, config.bullmq.prefixes, config.bullmq.layout)
    prefixes = ", ".join(config.bullmq.prefixes)
    if not found.queues:
        raise UnknownName(
            f"no BullMQ queues under prefix(es) {prefixes} on {target_display(config.target)}",
            "check [bullmq] prefixes (redis-runbook config show); after data loss: "
            "redis-runbook queues reconstruct",
        )
    try:
        found.queues = select(found, names or [])
    except KeyError as exc:
        valid = ", ".join(q.display for q in found.queues)
        raise UnknownName(
            f"unknown queue(s) {exc.args[0]} under prefix(es) {prefixes}; known: {valid}",
            "redis-runbook queues status",
        ) from None
    return found


@contextlib.contextmanager
def queue_session(
    config: Config, names: list[str] | None
) -> Iterator[tuple[redis.Redis, Discovery, str]]:
    """A client of the target (key names as bytes), the queues named (all when none),
    and the redacted URL; redis-py errors inside become one-line errors."""
    where = target_display(config.target)
    client = make_client(config.target, decode=False)
    try:
        connect(client, where)
        yield client, discovered(config, client, names), where
    except redis.RedisError as exc:
        raise classify(exc, where) from None
    finally:
        client.close()


def _age(ms: int | None) -> str:
    return format_duration(max(0.0, time.time() - ms / 1000)) + " ago" if ms else "-"


def status_table(counts: list[QueueCounts], target: str) -> Table:
    """One row per queue and a total row."""
    table = Table(title=f"BullMQ queues: {target}", title_justify="left")
    columns = ("queue", "waiting", "prioritized", "active", "locked", "stale", "immortal",
               "orphan", "delayed", "overdue", "children", "completed", "failed", "paused",
               "workers", "last event")  # fmt: skip
    for name in columns:
        table.add_column(name, justify="left" if name in ("queue", "last event") else "right")
    for c in counts:
        table.add_row(
            c.queue.display, str(c.waiting), str(c.prioritized), str(c.active.total),
            str(c.active.locked), str(c.active.stale), str(c.active.immortal),
            str(c.active.orphan), str(c.delayed), str(c.overdue), str(c.waiting_children),
            str(c.completed), str(c.failed), "yes" if c.paused else "",
            "n/a" if c.workers is None else str(c.workers), _age(c.last_event_ms),
        )  # fmt: skip

    def total(attr: str) -> str:
        return str(sum(int(getattr(c, attr)) for c in counts))

    def total_active(attr: str) -> str:
        return str(sum(int(getattr(c.active, attr)) for c in counts))

    table.add_section()
    table.add_row(
        f"total ({len(counts)})", total("waiting"), total("prioritized"), total_active("total"),
        total_active("locked"), total_active("stale"), total_active("immortal"),
        total_active("orphan"), total("delayed"), total("overdue"), total("waiting_children"),
        total("completed"), total("failed"), "", "", "",
    )  # fmt: skip
    stale = sum(c.active.stale for c in counts)
    if stale:
        table.caption = (
            f"{stale} active job(s) have lost their lock: redis-runbook queues recover-stale"
        )
        table.caption_justify = "left"
    return table


@app.command("status")
def status(
    ctx: typer.Context,
    queue: QueueOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Seed §5.1, read-only (safe on a replica): per queue and in total — waiting,
    prioritized, active split by lock (locked/stale/immortal/orphan), delayed (overdue),
    waiting-children, completed, failed, paused, worker connections, last event."""
    options = globals_of(ctx)
    with queue_session(options.load().config, queue) as (client, found, where):
        counts = queue_counts(client, found.queues)
    if json_output or options.json:
        print_json(
            {
                "target": where,
                "queues": [c.to_json() for c in counts],
                "without_meta": [q.name for q in found.without_meta],
            }
        )
        return
    out.print(status_table(counts, where))


@app.command("recover-stale")
def recover_stale(
    ctx: typer.Context,
    queue: QueueOption = None,
    count_as_stall: Annotated[
        bool,
        typer.Option("--count-as-stall", help="Raise the jobs' stalled counter, as BullMQ would."),
    ] = False,
    break_immortal: Annotated[
        bool,
        typer.Option(
            "--break-immortal-locks",
            help="Also free jobs whose lock has no TTL (type BREAK-LOCKS).",
        ),
    ] = False,
    wait_for_locks: Annotated[
        bool,
        typer.Option("--wait-for-locks", help="First wait until the longest lock TTL has passed."),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Even on a replica or an evicting server.")
    ] = False,
    understood: UnderstoodOption = False,
    batch: Annotated[int, typer.Option("--batch", min=1, max=5000, help="Ids per script.")] = BATCH,
) -> None:
    """Seed §5.2 done right: move active jobs whose lock is gone back to the head of
    their queue (paused list for a paused v5 queue) with our own Lua script that
    re-checks each lock; never touches a job whose lock exists; wakes workers."""
    options = globals_of(ctx)
    config = options.load().config
    with queue_session(config, queue) as (_client, found, _where):
        queues = found.queues
    pctx = ProcedureContext(config)
    settings = StaleOptions(count_as_stall, break_immortal, wait_for_locks, force, batch)
    run_plan(ctx, pctx, plan_recover_stale(pctx, queues, settings), extra_ok=understood)
