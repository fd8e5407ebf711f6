"""Rebuild BullMQ queues from PostgreSQL (seed §5.3, done right; bullmq.md §11.3).

The seed selects `... LIMIT 1000` (everything past row 1000 is silently dropped)
and awaits one `queue.add` per row with auto ids (a re-run enqueues everything
twice). Here, per source:

1. `scan_source` (plan time, read-only): run the source's SELECT through a
   server-side cursor in batches (constant memory, no LIMIT), count the rows,
   check every column the mapping names exists and render and check every job id
   and data value. A bad row stops the plan before anything is enqueued.
2. `enqueue_source`: stream the rows again and, chunk by chunk in row order,
   pre-check the job hashes with one pipelined `EXISTS` per chunk, then add the
   missing jobs with the official `bullmq` 2.x `Queue.addBulk` (one MULTI/EXEC
   of BullMQ's own add scripts; the next chunk is fetched meanwhile).

Why the `EXISTS` pre-check counts "already present" reliably: BullMQ's add script
stores nothing when `EXISTS <prefix>:<queue>:<jobId>` is 1, the very test made
here, and it returns the id either way, so the returned ids cannot tell a new job
from a duplicate; its `duplicated` events go to a stream capped at ~10,000 entries
that live producers share, so they can be trimmed away. Jobs found present are not
sent at all. If a producer adds the same id between the check and our MULTI, BullMQ
still stores it once; we then count it as added, and the queue is right either way.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
import redis
import redis.asyncio as aioredis

from redis_runbook.bullmq.jobid import JobIdTemplate, check_job_id
from redis_runbook.bullmq.keys import QueueRef
from redis_runbook.config import Source
from redis_runbook.config.reconstruct import ReconstructConfig, RowTemplate
from redis_runbook.errors import RunbookError
from redis_runbook.postgres import Dsn, SourceError, aconnect, connect, query_error

SINCE_ALL = datetime(1970, 1, 1, tzinfo=UTC)
SCAN_BATCH = 5000
DUPLICATES_SHOWN = 5
_PLAIN = (str, int, bool, type(None))
MAX_PRIORITY = 2_097_152

Progress = Callable[[int, int | None], None]
"""Rows done so far, and the total when known."""


class BadRow(ValueError):
    """A row whose job id or data BullMQ could not take."""


def json_value(value: object, column: str) -> object:
    """A column value as the JSON job data carries it: numbers, text, booleans and
    null as they are, json/jsonb as objects, timestamps as ISO 8601 in UTC with
    milliseconds (what Node's JSON.stringify(Date) gives), numeric as text."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BadRow(f"column {column} is {value}, which JSON cannot carry")
        return value
    if isinstance(value, datetime):
        stamp = value.astimezone(UTC) if value.tzinfo else value
        return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, dict | list):  # json/jsonb, arrays: must be JSON all the way down
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise BadRow(
                f"column {column} holds a {type(value).__name__} that JSON cannot carry; "
                f"cast it in the SQL (e.g. to_jsonb({column}))"
            ) from None
        return value
    raise BadRow(
        f"column {column} holds a {type(value).__name__} value, which JSON cannot carry; "
        f"cast it in the SQL (e.g. {column}::text)"
    )


def option_value(option: str, column: str, value: object) -> object:
    """A column's value as the BullMQ job option `option` (priority, delay, lifo);
    None leaves the option out. BadRow for a value BullMQ would not take."""
    if value is None:
        return None
    where = f"{option} column {column}"
    if option == "lifo":
        if not isinstance(value, bool):
            raise BadRow(f"{where}: expected a boolean, got {value!r}")
        return value
    if option == "delay" and isinstance(value, datetime):
        due = value if value.tzinfo else value.replace(tzinfo=UTC)
        return max(0, round((due - datetime.now(UTC)).total_seconds() * 1000))
    if isinstance(value, bool) or not isinstance(value, int):
        expected = "an integer (ms) or a timestamp" if option == "delay" else "an integer"
        raise BadRow(f"{where}: expected {expected}, got {value!r}")
    if option == "priority" and not 0 <= value <= MAX_PRIORITY:
        raise BadRow(f"{where}: expected 0 to {MAX_PRIORITY}, got {value}")
    return max(0, value)


@dataclass(frozen=True)
class RowMapper:
    """Turns a row (a tuple in the query's column order) into (job id, data, the
    per-row job options)."""

    source: str
    template: JobIdTemplate
    id_columns: tuple[int, ...]
    data_columns: tuple[tuple[str, str, int], ...]
    dedup: RowTemplate | None = None
    dedup_columns: tuple[int, ...] = ()
    dedup_ttl: int | None = None
    option_columns: tuple[tuple[str, str, int], ...] = ()

    @classmethod
    def for_columns(cls, source: Source, columns: Sequence[str]) -> RowMapper:
        """Raise SourceError naming every column the mapping needs but the query
        does not return."""
        template = source.template
        dedup = source.opts.deduplication
        dedup_template = dedup.template if dedup else None
        options = source.opts_columns.columns()
        wanted = list(
            dict.fromkeys(
                [
                    *template.columns,
                    *source.data.values(),
                    *(dedup_template.columns if dedup_template else ()),
                    *options.values(),
                ]
            )
        )
        missing = [c for c in wanted if c not in columns]
        if missing:
            raise SourceError(
                f"source {source.name}: the query returns no column {', '.join(missing)} "
                f"(job_id {source.job_id!r} / data / deduplication id / opts_columns need it); "
                f"it returns: {', '.join(columns)}"
            )
        index = {name: i for i, name in enumerate(columns)}
        return cls(
            source.name,
            template,
            tuple(index[c] for c in template.columns),
            tuple((key, col, index[col]) for key, col in source.data.items()),
            dedup_template,
            tuple(index[c] for c in dedup_template.columns) if dedup_template else (),
            dedup.ttl if dedup else None,
            tuple((option, col, index[col]) for option, col in options.items()),
        )

    def options(self, row: Sequence[object]) -> dict[str, object]:
        """The row's own job options: the rendered deduplication id (and TTL) and
        the options columns give (BadRow for a value BullMQ would not take)."""
        opts: dict[str, object] = {}
        if self.dedup is not None:
            values = [row[i] for i in self.dedup_columns]
            for column, value in zip(self.dedup.columns, values, strict=True):
                if value is None:
                    raise BadRow(f"column {column} is NULL, so the deduplication id has none")
            try:
                dedup: dict[str, object] = {"id": self.dedup.render(values)}
            except (ValueError, TypeError) as exc:
                raise BadRow(f"deduplication id {self.dedup.text!r}: {exc}") from None
            if self.dedup_ttl is not None:
                dedup["ttl"] = self.dedup_ttl
            opts["deduplication"] = dedup
        for option, column, index in self.option_columns:
            value = option_value(option, column, row[index])
            if value is not None:
                opts[option] = value
        return opts

    def job_id(self, row: Sequence[object]) -> str:
        """The row's job id; BadRow when it is NULL-based or BullMQ would refuse it."""
        values = [row[i] for i in self.id_columns]
        for column, value in zip(self.template.columns, values, strict=True):
            if value is None:
                raise BadRow(f"column {column} is NULL, so job_id {self.template.text!r} has no id")
        try:
            job_id = self.template.render(values)
        except (ValueError, TypeError) as exc:
            raise BadRow(f"job_id {self.template.text!r}: {exc}") from None
        problem = check_job_id(job_id)
        if problem:
            raise BadRow(f"job_id {self.template.text!r} gives {problem}")
        return job_id

    def data(self, row: Sequence[object]) -> dict[str, object]:
        """The row's job data (BadRow for a value JSON cannot carry)."""
        return {
            key: value if type(value) in _PLAIN else json_value(value, column)
            for key, column, index in self.data_columns
            for value in (row[index],)
        }

    def bad_row(self, number: int, row: Sequence[object], problem: BadRow) -> SourceError:
        """The error for row `number` (1-based, in query order)."""
        shown = ", ".join(
            f"{self.template.columns[k]}={row[i]!r}" for k, i in enumerate(self.id_columns)
        )
        return SourceError(f"source {self.source}: row {number} ({shown}): {problem}")


@dataclass
class Duplicates:
    """Rows whose job id an earlier row of the same pass already had (a JOIN that
    fans out, a missing DISTINCT): BullMQ keeps the first row's job, so the later
    rows' data is silently dropped unless someone says so. Remembers one 64-bit
    hash per id (not the ids), so memory stays small; a hash collision can only
    miscount, never skip a row (the enqueue pass still sends every id it has not
    seen in Redis)."""

    count: int = 0
    ids: list[str] = field(default_factory=list)
    _seen: set[int] = field(default_factory=set, repr=False)

    def seen_before(self, job_id: str) -> bool:
        """Record `job_id`; True when an earlier row had it."""
        key = hash(job_id)
        if key not in self._seen:
            self._seen.add(key)
            return False
        self.count += 1
        if len(self.ids) < DUPLICATES_SHOWN:
            self.ids.append(job_id)
        return True


def duplicates_warning(source: str, count: int, ids: Sequence[str]) -> str:
    """One sentence naming the repeated ids (the first few and how many more)."""
    shown = ", ".join(ids)
    more = f" and {count - len(ids)} more" if count > len(ids) else ""
    rows = "1 row repeats" if count == 1 else f"{count} rows repeat"
    return (
        f"source {source}: {rows} the job id of an earlier row ({shown}{more}): only the "
        "first row of each id is enqueued, with that row's data (the later rows' data is "
        "not used); check the SQL for a JOIN that fans out or a missing DISTINCT"
    )


def parameters(source: Source, since: datetime | None) -> dict[str, object]:
    """The SQL parameters the source uses; `since` defaults to the epoch (all rows)."""
    values: dict[str, object] = {"since": since or SINCE_ALL}
    return {name: values[name] for name in source.parameters}


def cursor_name(source: Source) -> str:
    """A unique server-side cursor name for one pass over a source."""
    return f"rr_{source.name.replace('-', '_').replace('.', '_')}_{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Scan:
    """What the plan-time pass found: the rows a source selects, all valid."""

    source: str
    selected: int
    columns: tuple[str, ...]
    first_id: str | None
    last_id: str | None
    seconds: float
    duplicate_rows: int = 0
    duplicate_ids: tuple[str, ...] = ()


def scan_source(
    dsn: Dsn,
    config: ReconstructConfig,
    source: Source,
    since: datetime | None,
    progress: Progress | None = None,
) -> Scan:
    """Count the source's rows and check every job id and data value (read-only).
    Raises SourceError / PostgresAuthFailed / PostgresUnavailable naming the source."""
    started = time.monotonic()
    selected, first_id, last_id = 0, None, None
    duplicates = Duplicates()
    with connect(dsn, config, source.name) as conn:
        try:
            with conn.cursor(name=cursor_name(source)) as cursor:
                cursor.execute(source.sql, parameters(source, since))
                columns = tuple(d.name for d in cursor.description or ())
                mapper = RowMapper.for_columns(source, columns)
                while rows := cursor.fetchmany(SCAN_BATCH):
                    for row in rows:
                        selected += 1
                        try:
                            last_id = mapper.job_id(row)
                            mapper.data(row)
                            mapper.options(row)
                        except BadRow as problem:
                            raise mapper.bad_row(selected, row, problem) from None
                        duplicates.seen_before(last_id)
                        first_id = first_id or last_id
                    if progress:
                        progress(selected, None)
        except psycopg.Error as exc:
            raise query_error(exc, dsn, source.name) from None
    return Scan(
        source.name,
        selected,
        columns,
        first_id,
        last_id,
        time.monotonic() - started,
        duplicates.count,
        tuple(duplicates.ids),
    )


@dataclass
class Figures:
    """What one source's enqueue pass did."""

    source: str
    queue: str
    selected: int = 0
    added: int = 0
    already_present: int = 0
    failed: int = 0
    seconds: float = 0.0
    problem: str | None = None
    duplicates: Duplicates = field(default_factory=Duplicates)
    deduplicated: int = 0
    """Rows whose job BullMQ did not add because the row's deduplication id was
    already taken (by the application's job, or an earlier row)."""
    out_of_memory: bool = False
    """Redis refused a write with OOM (used memory > maxmemory): free memory first."""

    @property
    def jobs_per_s(self) -> float:
        """Rows handled per second."""
        handled = self.added + self.already_present + self.duplicates.count + self.deduplicated
        return handled / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict[str, Any]:
        """JSON-ready figures (the journal's and `--json`'s)."""
        return {
            "source": self.source,
            "queue": self.queue,
            "selected": self.selected,
            "added": self.added,
            "already_present": self.already_present,
            "deduplicated": self.deduplicated,
            "failed": self.failed,
            "duplicate_rows": self.duplicates.count,
            "duplicate_ids": list(self.duplicates.ids),
            "out_of_memory": self.out_of_memory,
            "seconds": round(self.seconds, 3),
            "jobs_per_s": round(self.jobs_per_s),
            "problem": self.problem,
        }

    def describe(self) -> str:
        """One sentence for the operator."""
        repeated, ids = self.duplicates.count, self.duplicates.ids
        more = " ..." if repeated > len(ids) else ""
        duplicates = (
            f", {repeated} duplicate row{'s' if repeated != 1 else ''} "
            f"({', '.join(ids)}{more}; first row kept)"
            if repeated
            else ""
        )
        return (
            f"{self.selected} selected, {self.added} added, {self.already_present} already "
            f"present{duplicates}"
            + (f", {self.deduplicated} deduplicated" if self.deduplicated else "")
            + f", {self.failed} failed in {self.seconds:.1f} s "
            f"({self.jobs_per_s:,.0f} rows/s) into {self.queue}"
        )


class EnqueueFailed(RunbookError):
    """A source stopped part-way; `figures` says how far it got."""

    def __init__(self, message: str, figures: Figures) -> None:
        super().__init__(message)
        self.figures = figures


@dataclass
class Chunk:
    """One chunk of rows turned into jobs, in row order; `repeated[i]` is True when
    an earlier row of the pass had job i's id."""

    jobs: list[tuple[str, dict[str, object], dict[str, object]]] = field(default_factory=list)
    repeated: list[bool] = field(default_factory=list)


EXISTS_LUA = """
local found = {}
for i, key in ipairs(KEYS) do
  found[i] = redis.call('EXISTS', key)
end
return found
"""


@dataclass
class Writer:
    """Adds one source's chunks to one queue. Every chunk (pre-check and addBulk)
    must finish within `timeout` seconds: one deadline per chunk instead of one per
    reply keeps a dead Redis from hanging us without paying for 2,000 timers."""

    client: aioredis.Redis
    queue: QueueRef
    source: Source
    timeout: float
    bull_queue: Any = None
    exists: Any = None

    def __post_init__(self) -> None:
        from bullmq import Queue

        self.bull_queue = Queue(
            self.queue.name, {"connection": self.client, "prefix": self.queue.prefix}
        )
        self.exists = self.client.register_script(EXISTS_LUA)

    async def present(self, ids: Sequence[str]) -> list[bool]:
        """Which job hashes exist: one script call for the whole chunk (the test
        BullMQ's add script makes, `EXISTS <prefix>:<queue>:<jobId>`)."""
        if not ids:
            return []
        found = await self.exists(keys=[self.queue.job(job_id) for job_id in ids])
        return [bool(n) for n in found]

    async def add(self, chunk: Chunk, figures: Figures) -> None:
        """Pre-check, then addBulk the jobs that are not there yet; updates
        `figures`. Raises EnqueueFailed (figures settled by a second EXISTS when
        Redis still answers)."""
        sent: list[str] = []
        try:
            async with asyncio.timeout(self.timeout):
                present = await self.present([job_id for job_id, _, _ in chunk.jobs])
                batch = self._batch(chunk, present, sent, figures)
                added = await self.bull_queue.addBulk(batch) if batch else []
        except (redis.RedisError, OSError, TimeoutError) as exc:
            await self._settle(sent, figures, exc)
            raise EnqueueFailed(f"source {self.source.name}: {figures.problem}", figures) from None
        returned = [str(job.id) for job in added]
        # BullMQ returns the owner's id for a job it deduplicated (and stored nothing).
        deduplicated = sum(1 for got, ours in zip(returned, sent, strict=False) if got != ours)
        if len(returned) != len(sent) or (deduplicated and not self.source.opts.deduplication):
            figures.failed += len(sent)
            figures.problem = "addBulk returned other job ids than the ones sent"
            raise EnqueueFailed(f"source {self.source.name}: {figures.problem}", figures)
        figures.deduplicated += deduplicated
        figures.added += len(sent) - deduplicated

    def _batch(
        self, chunk: Chunk, present: list[bool], sent: list[str], figures: Figures
    ) -> list[dict[str, Any]]:
        opts = self.source.opts.bullmq()
        batch: list[dict[str, Any]] = []
        seen: set[str] = set()
        for (job_id, data, own), there, repeated in zip(
            chunk.jobs, present, chunk.repeated, strict=True
        ):
            if there or job_id in seen:
                if not repeated:  # repeated rows are counted in figures.duplicates
                    figures.already_present += 1
                continue
            seen.add(job_id)
            sent.append(job_id)
            batch.append(
                {
                    "name": self.source.job_name,
                    "data": data,
                    "opts": {**opts, **own, "jobId": job_id},
                }
            )
        return batch

    async def _settle(self, sent: list[str], figures: Figures, exc: BaseException) -> None:
        if isinstance(exc, TimeoutError):
            figures.problem = f"Redis gave no answer within {self.timeout:g} s"
        else:
            text = str(exc).splitlines()[0] if str(exc) else ""
            figures.problem = f"Redis error: {type(exc).__name__}: {text}"
            figures.out_of_memory = "OOM " in text or "used memory > 'maxmemory'" in text
        landed = 0
        try:
            async with asyncio.timeout(self.timeout):
                landed = sum(await self.present(sent))
        except (redis.RedisError, OSError, TimeoutError):
            pass  # unknown: counted as failed; a re-run settles it
        figures.added += landed
        figures.failed += len(sent) - landed


async def enqueue_source(
    dsn: Dsn,
    config: ReconstructConfig,
    source: Source,
    queue: QueueRef,
    client: aioredis.Redis,
    since: datetime | None,
    progress: Progress | None = None,
    total: int | None = None,
    chunk_timeout: float = 30.0,
) -> Figures:
    """Stream the source's rows and add the missing jobs chunk by chunk (see the
    module docstring). `client` should have no per-reply timeout: each chunk has
    `chunk_timeout`. Raises EnqueueFailed with the figures so far."""
    figures = Figures(source.name, queue.display)
    started = time.monotonic()
    chunk_size = config.chunk_size
    writer = Writer(client, queue, source, chunk_timeout)
    conn = await aconnect(dsn, config, source.name)
    try:
        cursor = conn.cursor(name=cursor_name(source))
        try:
            await cursor.execute(source.sql, parameters(source, since))
            mapper = RowMapper.for_columns(source, tuple(d.name for d in cursor.description or ()))
        except psycopg.Error as exc:
            raise query_error(exc, dsn, source.name) from None
        fetching = asyncio.ensure_future(cursor.fetchmany(chunk_size))
        try:
            while rows := await fetching:
                fetching = asyncio.ensure_future(cursor.fetchmany(chunk_size))
                chunk = Chunk()
                first = figures.selected + 1
                figures.selected += len(rows)
                for number, row in enumerate(rows, first):
                    try:
                        job_id = mapper.job_id(row)
                        chunk.jobs.append((job_id, mapper.data(row), mapper.options(row)))
                        chunk.repeated.append(figures.duplicates.seen_before(job_id))
                    except BadRow as problem:
                        figures.failed += len(rows)  # the whole chunk stays unsent
                        bad = mapper.bad_row(number, row, problem)
                        figures.problem = bad.message
                        raise EnqueueFailed(bad.message, figures) from None
                await writer.add(chunk, figures)
                if progress:
                    progress(figures.selected, max(total or 0, figures.selected))
        except psycopg.Error as exc:
            error = query_error(exc, dsn, source.name)
            figures.problem = error.message
            raise EnqueueFailed(error.message, figures) from None
        finally:
            if not fetching.done():
                fetching.cancel()
                await asyncio.gather(fetching, return_exceptions=True)
    finally:
        figures.seconds = time.monotonic() - started
        await conn.close()
    return figures
