"""`queues reconstruct` as a plan (seed §5.3): one step per source that streams the
PostgreSQL rows still needing work into BullMQ with deterministic job ids.

Planning is read-only and does all the checking, so bad input changes nothing:
the sources named exist; Redis is a writable primary, not loading, with
`noeviction` (else `--force`); no v6-layout queue is paused (the Python bullmq 2.x
would write v5's `paused` list); PostgreSQL answers with the DSN; every source's
SELECT runs, returns the columns the mapping needs, and renders a valid job id and
JSON data for every row (`scan_source`). The plan then shows each source's query
and row count; `--dry-run` stops there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis

from redis_runbook.bullmq.aioclient import async_client
from redis_runbook.bullmq.keys import QueueRef, layout_of
from redis_runbook.bullmq.reconstruct import (
    EnqueueFailed,
    Figures,
    Scan,
    duplicates_warning,
    enqueue_source,
    scan_source,
)
from redis_runbook.config import Config, Source
from redis_runbook.errors import ConfigError, Refused, UnknownName
from redis_runbook.journal import Journal
from redis_runbook.postgres import Dsn, resolve_dsn
from redis_runbook.procedures.context import ProcedureContext
from redis_runbook.procedures.engine import Confirm, Plan, Step, StepFailed
from redis_runbook.procedures.purge import LabelledProgress
from redis_runbook.replies import parse_info, text
from redis_runbook.target import classify, redis_errors
from redis_runbook.units import format_bytes

PROCEDURE = "queues reconstruct"
NO_SOURCES_HINT = (
    "add [[reconstruct.sources]] to the config (docs/configuration.md#reconstruct); "
    "`redis-runbook lab up --with-postgres` writes a working example"
)


@dataclass
class Options:
    """What to reconstruct: sources and queues by name (empty: all), `since`."""

    sources: Sequence[str] = ()
    queues: Sequence[str] = ()
    since: datetime | None = None
    force: bool = False


@dataclass
class Report:
    """Per-source figures, filled in as the steps run (for `--json`)."""

    scans: dict[str, Scan] = field(default_factory=dict)
    figures: dict[str, Figures] = field(default_factory=dict)
    progress: LabelledProgress | None = None
    """Where scans and steps report progress; the CLI swaps it between planning and
    execution so that no bar is drawn over the confirmation prompt."""

    def report(self, label: str) -> Callable[[int, int | None], None]:
        """A progress callback under `label` (a no-op while nobody listens)."""

        def update(done: int, total: int | None) -> None:
            if self.progress is not None:
                self.progress(label, done, total)

        return update

    def to_json(self) -> dict[str, Any]:
        """The scans (rows selected per source) and, once run, each source's figures."""
        return {
            "scans": [
                {
                    "source": s.source,
                    "selected": s.selected,
                    "columns": list(s.columns),
                    "first_job_id": s.first_id,
                    "last_job_id": s.last_id,
                    "duplicate_rows": s.duplicate_rows,
                    "duplicate_ids": list(s.duplicate_ids),
                    "seconds": round(s.seconds, 3),
                }
                for s in self.scans.values()
            ],
            "sources": [f.to_json() for f in self.figures.values()],
        }

    def summary(self) -> str:
        """The closing line: jobs added and already present over every source."""
        added = sum(f.added for f in self.figures.values())
        present = sum(f.already_present for f in self.figures.values())
        repeated = sum(f.duplicates.count for f in self.figures.values())
        return (
            f"{PROCEDURE}: done, {len(self.figures)} source(s): {added} added, {present} "
            "already present"
            + (f", {repeated} duplicate rows (first row of each id kept)" if repeated else "")
        )


def queue_of(config: Config, source: Source) -> QueueRef:
    """The queue a source feeds: its prefix, else the first of [bullmq] prefixes."""
    return QueueRef(source.prefix or config.bullmq.prefixes[0], source.queue)


def chunk_timeout(config: Config) -> float:
    """How long one chunk (pre-check + addBulk) may take: 4x [target]
    command_timeout, at least 10 s."""
    return max(10.0, 4 * config.target.command_timeout)


def select_sources(config: Config, names: Sequence[str], queues: Sequence[str]) -> list[Source]:
    """The configured sources matching `--source` and `--queue` (config order).
    UnknownName (exit 2, nothing done) lists the valid names."""
    sources = config.reconstruct.sources
    if not sources:
        raise ConfigError("no [[reconstruct.sources]] configured", NO_SOURCES_HINT)
    valid_names = [s.name for s in sources]
    unknown = [n for n in names if n not in valid_names]
    if unknown:
        raise UnknownName(
            f"unknown source {', '.join(unknown)}; configured sources: {', '.join(valid_names)}",
            "redis-runbook config show   # the [[reconstruct.sources]]",
        )
    valid_queues = list(dict.fromkeys(s.queue for s in sources))
    unknown = [q for q in queues if q not in valid_queues]
    if unknown:
        raise UnknownName(
            f"unknown queue {', '.join(unknown)}: no source feeds it; "
            f"queues with sources: {', '.join(valid_queues)}",
            "redis-runbook config show   # the queue of each [[reconstruct.sources]]",
        )
    chosen = [
        s for s in sources if (not names or s.name in names) and (not queues or s.queue in queues)
    ]
    if not chosen:
        raise UnknownName(
            f"no source is both named {', '.join(names)} and feeds {', '.join(queues)}",
            "redis-runbook config show   # the [[reconstruct.sources]]",
        )
    return chosen


def preflight(
    client: redis.Redis, config: Config, queues: Sequence[QueueRef], force: bool
) -> list[str]:
    """Refuse a replica, a loading server, an evicting policy (unless `force`) and a
    paused v6-layout queue; returns notes (memory, paused queues)."""
    info = parse_info(text(client.execute_command("INFO", "replication")))
    info.update(parse_info(text(client.execute_command("INFO", "persistence"))))
    info.update(parse_info(text(client.execute_command("INFO", "memory"))))
    role = info.get("role", "?")
    if role != "master":
        master = (
            f" of {info.get('master_host')}:{info.get('master_port')}" if role == "slave" else ""
        )
        raise Refused(
            f"the target is a replica{master} (role:{role}): reconstruct writes jobs",
            "point [target] url at the primary (redis-runbook health shows the role)",
        )
    if info.get("loading") == "1":
        raise Refused("Redis is still loading its dataset", "wait: redis-runbook health")
    used, limit = int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))
    notes = [
        f"Redis memory: {format_bytes(used)} used of "
        f"{format_bytes(limit) + ' maxmemory' if limit else 'no maxmemory'}"
    ]
    policy = info.get("maxmemory_policy", "?")
    if policy != "noeviction":
        if not force:
            raise Refused(
                f"maxmemory-policy is {policy}: adding jobs could evict other keys, and the "
                "jobs themselves can be evicted",
                "CONFIG SET maxmemory-policy noeviction (and in redis.conf), or accept it: "
                "redis-runbook queues reconstruct --force",
            )
        notes.append(f"forced despite maxmemory-policy {policy}")
    for queue in dict.fromkeys(queues):
        meta: list[Any] = list(client.hmget(queue.key("meta"), ["version", "paused"]))  # type: ignore[arg-type]
        version, paused = meta
        layout = layout_of(text(version) if version else None, config.bullmq.layout)
        if paused and layout == "v6":
            raise Refused(
                f"queue {queue.display} is paused and uses the v6 layout: the Python bullmq 2.x "
                "would put jobs in the v5 `paused` list, where v6 workers never look",
                f"resume {queue.display} first (or reconstruct it with a v6 client)",
            )
        if paused:
            notes.append(
                f"queue {queue.display} is paused: its jobs go to the `paused` list until resumed"
            )
    return notes


def _one_line(sql: str) -> str:
    return " ".join(sql.split())


def plan_reconstruct(ctx: ProcedureContext, options: Options, report: Report) -> Plan:
    """Check everything (read-only) and build the plan; raises before anything
    is changed (UnknownName, ConfigError, Refused, TargetUnavailable, SourceError,
    PostgresAuthFailed, PostgresUnavailable)."""
    config = ctx.config
    sources = select_sources(config, options.sources, options.queues)
    dsn = resolve_dsn(config.reconstruct)
    client = ctx.client()
    try:
        with redis_errors(ctx.where):
            notes = preflight(client, config, [queue_of(config, s) for s in sources], options.force)
    finally:
        client.close()
    since = options.since
    notes.insert(0, f"PostgreSQL: {dsn.display}")
    notes.insert(1, f"since: {since.isoformat() if since else 'everything (%(since)s = epoch)'}")
    steps = []
    for source in sources:
        scan = scan_source(
            dsn, config.reconstruct, source, since, report.report(f"scan {source.name}")
        )
        report.scans[source.name] = scan
        queue = queue_of(config, source)
        notes.append(f"source {source.name}: {_one_line(source.sql)}")
        if scan.duplicate_rows:
            warning = duplicates_warning(source.name, scan.duplicate_rows, scan.duplicate_ids)
            notes.append(f"WARNING: {warning}")
        if since and "since" not in source.parameters:
            notes.append(f"source {source.name} does not use %(since)s: --since does not narrow it")
        steps.append(_source_step(ctx, dsn, source, queue, scan, options, report))
    return Plan(
        procedure=PROCEDURE,
        target=ctx.where,
        steps=steps,
        confirm=Confirm.YES_NO,
        notes=notes,
        extra=report.to_json,
        summary=report.summary,
    )


def _source_step(
    ctx: ProcedureContext,
    dsn: Dsn,
    source: Source,
    queue: QueueRef,
    scan: Scan,
    options: Options,
    report: Report,
) -> Step:
    journal = Journal.in_dir(ctx.config.runbook.state_dir)
    rerun = (
        f"redis-runbook queues reconstruct --source {source.name}   "
        "# re-running adds only the jobs that are missing"
    )

    def action() -> str:
        """Stream the source's rows and add the jobs that are missing (chunks of
        `chunk_size`, pre-checked with EXISTS, addBulk), then read one back."""
        client = async_client(ctx.config.target, reply_timeout=False)

        async def run() -> Figures:
            try:
                return await enqueue_source(
                    dsn,
                    ctx.config.reconstruct,
                    source,
                    queue,
                    client,
                    options.since,
                    report.report(f"enqueue {source.name}"),
                    scan.selected,
                    chunk_timeout(ctx.config),
                )
            finally:
                await client.aclose()

        try:
            figures = asyncio.run(run())
        except EnqueueFailed as failed:
            report.figures[source.name] = failed.figures
            _journal(journal, ctx, source, "failed", failed.figures)
            hint = rerun
            if failed.figures.out_of_memory:  # a bare re-run would hit the same wall
                hint = (
                    "redis-runbook recover oom   # free memory first (a re-run now fails the "
                    f"same way); then: {rerun}"
                )
            raise StepFailed(f"{failed.message} ({failed.figures.describe()})", hint) from None
        except redis.RedisError as exc:
            raise classify(exc, ctx.where) from None
        report.figures[source.name] = figures
        _journal(journal, ctx, source, "done", figures)
        return figures.describe()

    rows = f"{scan.selected} row{'s' if scan.selected != 1 else ''}"
    # No on_failure: it would outrank the hint each failure carries (OOM: free memory
    # first); errors that are not StepFailed keep their own hint (diagnose, ...).
    return Step(
        f"source {source.name}: enqueue {rows} into {queue.display} as {source.job_name!r} jobs "
        f"(ids {source.job_id}, chunks of {ctx.config.reconstruct.chunk_size}, in row order)",
        action,
    )


def _journal(
    journal: Journal, ctx: ProcedureContext, source: Source, outcome: str, figures: Figures
) -> None:
    journal.record(
        target=ctx.where,
        procedure=PROCEDURE,
        step=f"source {source.name}",
        outcome=outcome,
        message=figures.describe(),
        figures=figures.to_json(),
    )
