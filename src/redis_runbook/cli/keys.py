"""`redis-runbook keys stats | purge`: the keyspace by data category (seed §1.2)
and the safe purge (SCAN + pipelined UNLINK) as a plan."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from redis_runbook.cli.context import globals_of
from redis_runbook.cli.procedure import UnderstoodOption, procedure_context, run_plan
from redis_runbook.cli.progress import walk_progress
from redis_runbook.cli.render import out, print_json
from redis_runbook.defaults import DEFAULT_BATCH, DEFAULT_RANDOM_KEYS, DEFAULT_SAMPLE
from redis_runbook.errors import ConfigError
from redis_runbook.units import format_bytes

if TYPE_CHECKING:
    import redis
    from rich.table import Table

    from redis_runbook.config import Config
    from redis_runbook.keyspace import KeyspaceStats
    from redis_runbook.memory import MemoryFigures

app = typer.Typer(
    help="Keys per data category (seed §1.2) and the safe purge.", no_args_is_help=True
)

CategoryOption = Annotated[
    list[str] | None,
    typer.Option("--category", help="A rebuildable category to purge (repeatable)."),
]
CriticalOption = Annotated[
    list[str] | None,
    typer.Option(
        "--include-critical",
        help="Also purge this NON-rebuildable category (repeatable); you must type its name.",
    ),
]
BatchOption = Annotated[
    int, typer.Option("--batch", min=1, max=10_000, help="Keys per UNLINK command.")
]
RateOption = Annotated[
    float | None,
    typer.Option("--max-ops-per-s", min=1, help="Delete at most this many keys per second."),
]


def stats_table(stats: KeyspaceStats, memory: MemoryFigures, target: str) -> Table:
    """One row per category: keys, estimated memory, keys with a TTL."""
    from rich.table import Table

    table = Table(title=f"Keys by category: {target}", title_justify="left")
    for name, justify in (
        ("category", "left"),
        ("pattern", "left"),
        ("priority", "left"),
        ("rebuildable", "left"),
        ("keys", "right"),
        ("memory (est.)", "right"),
        ("% of used", "right"),
        ("with TTL (est.)", "right"),
    ):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for s in stats.categories.values():
        share = f"{s.estimated_bytes / memory.used * 100:.1f}" if memory.used else "-"
        table.add_row(
            Text(s.name),
            Text(s.pattern or "(no category)"),  # `cache:[a-z]*` is a glob, not markup
            s.priority,
            "yes" if s.rebuildable else "no",
            str(s.keys),
            format_bytes(s.estimated_bytes),
            share,
            str(s.estimated_with_ttl),
        )
    table.caption = (
        f"{memory.describe()}\n{stats.scanned} keys scanned in {stats.seconds:.1f} s; memory and "
        f"TTLs from MEMORY USAGE / PTTL of up to {stats.sample} keys per category, scaled"
    )
    table.caption_justify = "left"
    return table


@contextlib.contextmanager
def _reading(config: Config) -> Iterator[tuple[redis.Redis, str, MemoryFigures]]:
    """What `keys stats` reads over: a client of the target (bytes) that answered
    the handshake, the target's name and its memory now; a Redis error in the block
    is a RunbookError naming the target."""
    from redis_runbook.memory import read_memory
    from redis_runbook.target import connect, make_client, redis_errors, target_display

    where = target_display(config.target)
    client = make_client(config.target, decode=False)
    try:
        connect(client, where)
        with redis_errors(where):
            yield client, where, read_memory(client)
    finally:
        client.close()


@app.command("stats")
def stats(
    ctx: typer.Context,
    sample: Annotated[
        int,
        typer.Option(
            "--sample", min=0, help="Keys per category measured with MEMORY USAGE / PTTL."
        ),
    ] = DEFAULT_SAMPLE,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
    estimate: Annotated[
        bool,
        typer.Option(
            "--estimate",
            help="Estimate from random keys (RANDOMKEY) with 95 % error bars, no walk: "
            "well under a second whatever the keyspace's size.",
        ),
    ] = False,
    random_keys: Annotated[
        int, typer.Option("--random-keys", min=1, help="With --estimate: keys drawn.")
    ] = DEFAULT_RANDOM_KEYS,
) -> None:
    """Keys, estimated memory and keys with a TTL per data category, in one SCAN
    walk (never KEYS), or estimated from random keys with --estimate. Read-only."""
    if estimate:
        _estimate(ctx, random_keys, json_output)
        return
    from redis_runbook.keyspace import category_stats
    from redis_runbook.procedures.purge import labelled

    options = globals_of(ctx)
    as_json = json_output or options.json
    config = options.load().config
    with _reading(config) as (client, where, memory), walk_progress(not as_json) as progress:
        result = category_stats(
            client, config.categories, sample, on_progress=labelled(progress, "scan")
        )
    if as_json:
        print_json(
            {
                "target": where,
                "memory": memory.to_json(),
                "scanned": result.scanned,
                "seconds": round(result.seconds, 3),
                "sample": sample,
                "categories": [s.to_json() for s in result.categories.values()],
            }
        )
        return
    out.print(stats_table(result, memory, where))


def _estimate(ctx: typer.Context, random_keys: int, json_output: bool) -> None:
    """`keys stats --estimate`: the sampled estimate, as a table or one JSON document."""
    from redis_runbook.keyspace_estimate import estimate

    options = globals_of(ctx)
    config = options.load().config
    with _reading(config) as (client, where, memory):
        found = estimate(client, config.categories, random_keys)
    if json_output or options.json:
        print_json(
            {
                "target": where,
                "memory": memory.to_json(),
                "estimate": True,
                "total": found.total,
                "random_keys": found.samples,
                "seconds": round(found.seconds, 3),
                "categories": [c.to_json() for c in found.categories.values()],
            }
        )
        return
    from rich.table import Table

    patterns = {c.name: c.pattern for c in config.categories}
    table = Table(title=f"Keys by category (estimated): {where}", title_justify="left")
    for name in ("category", "pattern", "keys (95 %)", "memory (95 %)", "with TTL (95 %)"):
        table.add_column(name, justify="left" if name in ("category", "pattern") else "right")
    for c in found.categories.values():
        table.add_row(
            Text(c.name),
            Text(patterns.get(c.name) or "(no category)"),
            c.keys.describe(),
            f"{format_bytes(c.memory.value)} ± {format_bytes(c.memory.error)}",
            c.with_ttl.describe(),
        )
    table.caption = (
        f"{memory.describe()}\n{found.total:,} keys (DBSIZE); {found.samples:,} random keys "
        f"measured in {found.seconds:.2f} s; exact counts: redis-runbook keys stats"
    )
    table.caption_justify = "left"
    out.print(table)


@app.command("purge")
def purge(
    ctx: typer.Context,
    category: CategoryOption = None,
    include_critical: CriticalOption = None,
    understood: UnderstoodOption = False,
    batch: BatchOption = DEFAULT_BATCH,
    max_ops_per_s: RateOption = None,
) -> None:
    """Delete every key of a category with SCAN + pipelined UNLINK (seed §3.2's
    `--scan | xargs DEL`, done safely): plan, --dry-run, y/N, journal. A category
    that is not rebuildable needs --include-critical NAME and its name typed."""
    if not category and not include_critical:
        raise ConfigError(
            "keys purge needs --category NAME",
            "redis-runbook keys stats   # the categories, their keys and memory",
        )
    from redis_runbook.procedures.purge import plan_purge

    options = globals_of(ctx)
    pctx = procedure_context(ctx)
    with walk_progress(not options.json) as progress:
        plan = plan_purge(
            pctx,
            category or [],
            include_critical or [],
            batch=batch,
            max_ops_per_s=max_ops_per_s,
            progress=progress,
        )
        run_plan(ctx, pctx, plan, understood)
