"""`redis-runbook queues ...`: BullMQ queue recovery (seed §5)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from redis_runbook.cli.context import globals_of
from redis_runbook.cli.procedure import UnderstoodOption, run_plan
from redis_runbook.cli.render import out, plain, print_json
from redis_runbook.defaults import STALE_BATCH
from redis_runbook.errors import UnknownName
from redis_runbook.units import format_duration

if TYPE_CHECKING:
    import redis
    from rich.table import Table

    from redis_runbook.bullmq.counts import QueueCounts
    from redis_runbook.bullmq.discovery import Discovery
    from redis_runbook.config import Config

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
    from redis_runbook.bullmq.discovery import discover, select
    from redis_runbook.target import target_display

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
    and the redacted URL; redis-py errors inside become one-line errors (a server
    busy with a script or paused says so, with the command that works on it)."""
    from redis_runbook.stall import stall_errors
    from redis_runbook.target import connect, make_client, target_display

    where = target_display(config.target)
    client = make_client(config.target, decode=False)
    try:
        with stall_errors(config.target, "the queues command"):
            connect(client, where)
            yield client, discovered(config, client, names), where
    finally:
        client.close()


def _age(ms: int | None) -> str:
    return format_duration(max(0.0, time.time() - ms / 1000)) + " ago" if ms else "-"


# (header, two-line header for the table): short enough that a whole row of counts
# plus a long queue name fits a 160-column log line.
STATUS_COLUMNS = (
    ("waiting", "waiting"), ("prioritized", "prior-\nitized"), ("active", "active"),
    ("locked", "locked"), ("stale", "stale"), ("immortal", "immor-\ntal"),
    ("orphan", "orphan"), ("delayed", "delayed"), ("overdue", "over-\ndue"),
    ("children", "chil-\ndren"), ("completed", "com-\npleted"), ("failed", "failed"),
    ("paused", "paused"), ("workers", "work-\ners"), ("last event", "last\nevent"),
)  # fmt: skip


def _status_rows(counts: list[QueueCounts]) -> list[tuple[str, list[str]]]:
    """(queue name, one value per STATUS_COLUMNS entry) per queue, then the total."""
    rows = [
        (c.queue.display, [
            str(c.wait), str(c.prioritized), str(c.active.total), str(c.active.locked),
            str(c.active.stale), str(c.active.immortal), str(c.active.orphan), str(c.delayed),
            str(c.overdue), str(c.waiting_children), str(c.completed), str(c.failed),
            _paused_cell(c), "n/a" if c.workers is None else str(c.workers),
            _age(c.last_event_ms),
        ])
        for c in counts
    ]  # fmt: skip

    def total(attr: str) -> str:
        return str(sum(int(getattr(c, attr)) for c in counts))

    def total_active(attr: str) -> str:
        return str(sum(int(getattr(c.active, attr)) for c in counts))

    paused_jobs = sum(c.paused_list for c in counts)
    rows.append((f"total ({len(counts)})", [
        total("wait"), total("prioritized"), total_active("total"), total_active("locked"),
        total_active("stale"), total_active("immortal"), total_active("orphan"),
        total("delayed"), total("overdue"), total("waiting_children"), total("completed"),
        total("failed"), str(paused_jobs) if paused_jobs else "", "", "",
    ]))  # fmt: skip
    return rows


def _paused_cell(c: QueueCounts) -> str:
    """Node's figures: `waiting` is the `wait` list only; a paused v5 queue's jobs
    are counted here, as getJobCounts() counts them (`paused`)."""
    if c.paused:
        return f"yes: {c.paused_list}"
    return str(c.paused_list) if c.paused_list else ""


def _stale_caption(counts: list[QueueCounts]) -> str | None:
    stale = sum(c.active.stale for c in counts)
    if not stale:
        return None
    return f"{stale} active job(s) have lost their lock: redis-runbook queues recover-stale"


def status_table(counts: list[QueueCounts], target: str) -> Table:
    """One row per queue and a total row. Nothing in it is cut short: the queue
    column is as wide as the longest name (`enrich-…` and `enrich:…` would look alike)
    and the counts never wrap; `print_status` falls back to lines when it is too wide."""
    from rich import box
    from rich.table import Table

    table = Table(
        title=plain(f"BullMQ queues: {target}"),
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("queue", no_wrap=True)
    for name, header in STATUS_COLUMNS:
        table.add_column(header, justify="left" if name == "last event" else "right", no_wrap=True)
    rows = _status_rows(counts)
    for label, values in rows[:-1]:
        table.add_row(plain(label), *values)
    table.add_section()
    table.add_row(plain(rows[-1][0]), *rows[-1][1])
    caption = _stale_caption(counts)
    if caption:
        table.caption = caption
        table.caption_justify = "left"
    return table


def status_lines(counts: list[QueueCounts], target: str) -> list[str]:
    """The same figures as `status_table`, one line per queue, for a console too
    narrow for the table: every name whole, every count named."""
    lines = [f"BullMQ queues: {target}"]
    for label, values in _status_rows(counts):
        pairs = [f"{name} {value}" for (name, _), value in zip(STATUS_COLUMNS, values, strict=True)]
        lines.append(f"{label}: " + ", ".join(p for p in pairs if not p.endswith(" ")))
    caption = _stale_caption(counts)
    return [*lines, caption] if caption else lines


def print_status(counts: list[QueueCounts], target: str) -> None:
    """The table when it fits the console without cutting anything, else lines."""
    from rich.measure import Measurement

    table = status_table(counts, target)
    wanted = Measurement.get(out, out.options.update_width(10_000), table).maximum
    if wanted <= out.width:
        out.print(table)
        return
    for line in status_lines(counts, target):
        out.print(line, markup=False, soft_wrap=True)


@app.command("status")
def status(
    ctx: typer.Context,
    queue: QueueOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Seed §5.1, read-only (safe on a replica): per queue and in total — waiting,
    prioritized, active split by lock (locked/stale/immortal/orphan), delayed (overdue),
    waiting-children, completed, failed, paused, worker connections, last event; then
    each queue's job schedulers (id, pattern or every, next run)."""
    from redis_runbook.bullmq.counts import queue_counts

    options = globals_of(ctx)
    with queue_session(options.load().config, queue) as (client, found, where):
        counts = queue_counts(client, found.queues, schedulers=True)
    if json_output or options.json:
        print_json(
            {
                "target": where,
                "queues": [c.to_json() for c in counts],
                "without_meta": [q.name for q in found.without_meta],
                "warnings": legacy_name_warnings(found),
            }
        )
        return
    print_status(counts, where)
    for line in scheduler_lines(counts):
        out.print(line, markup=False, soft_wrap=True)
    for warning in legacy_name_warnings(found):
        out.print(f"WARNING: {warning}", markup=False, soft_wrap=True)


def _next_run(ms: int | None) -> str:
    if ms is None:
        return "-"
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))
    ahead = ms / 1000 - time.time()
    return f"{when} (in {format_duration(ahead)})" if ahead >= 0 else f"{when} (overdue)"


def scheduler_lines(counts: list[QueueCounts]) -> list[str]:
    """The job schedulers (repeatable jobs) of each queue that has some: id, name,
    pattern or every, next run; nothing when no queue has one."""
    lines: list[str] = []
    for c in counts:
        if not c.scheduler_count:
            continue
        lines.append(f"job schedulers of {c.queue.display} ({c.scheduler_count}):")
        for s in c.schedulers:
            kind = "" if s.kind == "scheduler" else f" [{s.kind} repeatable job]"
            name = f" job {s.name!r}" if s.name else ""
            lines.append(f"  {s.id}{kind}:{name} {s.schedule}, next {_next_run(s.next_ms)}")
        if c.scheduler_count > len(c.schedulers):
            lines.append(f"  … and {c.scheduler_count - len(c.schedulers)} more")
    return lines


def legacy_name_warnings(found: Discovery) -> list[str]:
    """A warning for each queue whose name BullMQ v5 cannot use (a legacy name with
    `:` that discovery still reads): its jobs wait for workers that cannot exist."""
    return [
        f"queue {q.display} has ':' in its name: BullMQ v5 workers cannot use it "
        f'("Queue name cannot contain :"); v5 producers and workers need a name '
        f"without ':', e.g. {q.name.replace(':', '-')!r}"
        for q in found.queues
        if ":" in q.name
    ]


@app.command("recover-stale")
def recover_stale(
    ctx: typer.Context,
    queue: QueueOption = None,
    count_as_stall: Annotated[
        bool,
        typer.Option(
            "--count-as-stall",
            help="As BullMQ's stalled check: raise the jobs' stalled counter; one over "
            "[bullmq] max_stalled_count (default 1) is failed by the next worker.",
        ),
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
    batch: Annotated[
        int, typer.Option("--batch", min=1, max=5000, help="Ids examined per script call.")
    ] = STALE_BATCH,
) -> None:
    """Seed §5.2 done right: move active jobs whose lock is gone back to the head of
    their queue (paused list for a paused v5 queue) with our own Lua script that
    re-checks each lock; never moves a job whose lock exists; wakes workers. The last
    step re-counts: a stale job still in active fails the run (exit 1)."""
    from redis_runbook.procedures.context import ProcedureContext
    from redis_runbook.procedures.stale import Options as StaleOptions
    from redis_runbook.procedures.stale import plan_recover_stale

    options = globals_of(ctx)
    config = options.load().config
    with queue_session(config, queue) as (_client, found, _where):
        queues = found.queues
    pctx = ProcedureContext(config)
    settings = StaleOptions(count_as_stall, break_immortal, wait_for_locks, force, batch)
    run_plan(ctx, pctx, plan_recover_stale(pctx, queues, settings), understood)
