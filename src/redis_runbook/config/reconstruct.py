"""The `[reconstruct]` section of the configuration (seed §5.3): where PostgreSQL
is, and which rows become which BullMQ jobs. Kept apart from config/model.py (which
re-exports it) so that each module stays small.

    [reconstruct]
    dsn_file = "/etc/redis-runbook/postgres.dsn"     # or dsn_env / dsn_command

    [[reconstruct.sources]]
    name = "enrich"
    queue = "enrich-batch"
    job_name = "enrich"
    sql = "SELECT id, source_type, cui FROM prospects WHERE enrichment_status = 'pending'
           AND created_at >= %(since)s ORDER BY created_at, id"
    job_id = "enrich-{id}"
    data = { prospectId = "id", sourceType = "source_type", cui = "cui" }
    opts = { attempts = 3, backoff = { type = "exponential", delay = 5000 },
             deduplication = { id = "prospect:{id}" } }
    opts_columns = { priority = "prio", delay = "run_at", lifo = "urgent" }
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, field_validator, model_validator

from redis_runbook.config.base import Section, new_list

if TYPE_CHECKING:
    from redis_runbook.bullmq.jobid import JobIdTemplate

SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
SQL_PARAMETERS = ("since",)
_SQL_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
_SQL_START = re.compile(r"\s*(?:--[^\n]*\n\s*)*\(?\s*(select|with|values|table)\b", re.IGNORECASE)


class Backoff(Section):
    """BullMQ `backoff` as an object: a strategy and a delay in ms."""

    type: str = Field("fixed", min_length=1)
    delay: int = Field(0, ge=0)
    jitter: float | None = Field(None, ge=0, le=1)


class KeepJobs(Section):
    """BullMQ `removeOnComplete` / `removeOnFail` as an object: keep jobs at most
    `age` seconds and/or the last `count`."""

    age: int | None = Field(None, ge=0)
    count: int | None = Field(None, ge=0)


NonNegative = Annotated[int, Field(ge=0)]
_COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class RowTemplate:
    """A text rendered per row from `{column}` placeholders (format specs allowed),
    any other character kept as it is (`:` too: a deduplication id is the
    application's own string, unlike a job id)."""

    text: str
    columns: tuple[str, ...]
    positional: str

    @classmethod
    def parse(cls, text: str, what: str) -> RowTemplate:
        """Parse and check; ValueError naming `what` (e.g. 'deduplication id')."""
        if not text or len(text) > 250:
            raise ValueError(f"{what} template: expected 1 to 250 characters, got {len(text)}")
        columns: list[str] = []
        parts: list[str] = []
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise ValueError(f"{what} template {text!r}: {exc}") from None
        for literal, name, spec, conversion in parsed:
            parts.append(literal.replace("{", "{{").replace("}", "}}"))
            if name is None:
                continue
            if not _COLUMN.fullmatch(name) or conversion is not None:
                raise ValueError(
                    f"{what} template {text!r}: placeholder {{{name}}} must be a plain column "
                    "name such as {id}"
                )
            if name not in columns:
                columns.append(name)
            parts.append("{" + str(columns.index(name)) + (f":{spec}" if spec else "") + "}")
        if not columns:
            raise ValueError(
                f"{what} template {text!r} has no {{column}} placeholder: every row would get "
                "the same one (BullMQ would keep one job and drop the rest)"
            )
        return cls(text, tuple(columns), "".join(parts))

    def render(self, values: list[object]) -> str:
        """The text for one row, given the values of `columns` in order."""
        return self.positional.format(*values)


class Deduplication(Section):
    """BullMQ `deduplication` (simple mode, optionally with a TTL): `id` is a template
    over the row's columns that must render the very id the application uses when it
    adds the same work, so that whichever comes second is deduplicated by BullMQ
    (key `<prefix>:<queue>:de:<id>`, event `deduplicated`). `extend`, `replace` and
    `keepLastIfActive` are not passed through: they replace or postpone the other
    side's job, which a rebuild must never do."""

    id: str
    ttl: int | None = Field(None, ge=1)

    @field_validator("id")
    @classmethod
    def _id_template(cls, text: str) -> str:
        RowTemplate.parse(text, "deduplication id")
        return text

    @property
    def template(self) -> RowTemplate:
        """The parsed id template."""
        return RowTemplate.parse(self.id, "deduplication id")


class OptionColumns(Section):
    """Job options a column of the source's query gives per row (NULL: the static
    `opts` value, else BullMQ's default): `priority` (integer 0..2097152), `delay` (ms
    as an integer, or a timestamp: the job runs then, at once if it has passed),
    `lifo` (boolean)."""

    priority: str | None = Field(None, min_length=1)
    delay: str | None = Field(None, min_length=1)
    lifo: str | None = Field(None, min_length=1)

    def columns(self) -> dict[str, str]:
        """option -> column, for the options set."""
        return self.model_dump(exclude_none=True)


class JobOptions(Section):
    """The job options a reconstructed job gets: copy the Node producer's
    `defaultJobOptions` (they live only in the producer process, never in Redis).
    Keys are BullMQ's own (camelCase)."""

    attempts: int | None = Field(None, ge=1, le=1_000_000)
    backoff: NonNegative | Backoff | None = None
    removeOnComplete: bool | NonNegative | KeepJobs | None = None
    removeOnFail: bool | NonNegative | KeepJobs | None = None
    priority: int | None = Field(None, ge=0, le=2_097_152)
    delay: int | None = Field(None, ge=0)
    lifo: bool | None = None
    stackTraceLimit: int | None = Field(None, ge=0)
    keepLogs: int | None = Field(None, ge=0)
    deduplication: Deduplication | None = None

    def bullmq(self) -> dict[str, Any]:
        """The options as BullMQ takes them (unset keys left out); `deduplication` is
        rendered per row, so it is not among them."""
        return self.model_dump(exclude_none=True, exclude={"deduplication"})


class Source(Section):
    """One `[[reconstruct.sources]]`: the PostgreSQL rows that still need work and
    the BullMQ job each row becomes (seed §5.3)."""

    name: str
    queue: str
    job_name: str = Field(min_length=1)
    sql: str
    job_id: str
    data: dict[str, str] = Field(default_factory=dict)
    opts: JobOptions = Field(default_factory=JobOptions)
    opts_columns: OptionColumns = Field(default_factory=OptionColumns)
    prefix: str | None = None

    @field_validator("name")
    @classmethod
    def _source_name(cls, name: str) -> str:
        if not SOURCE_NAME.fullmatch(name):
            raise ValueError(f"expected a name of letters, digits, '_', '.', '-', got {name!r}")
        return name

    @field_validator("queue")
    @classmethod
    def _queue_name(cls, queue: str) -> str:
        from redis_runbook.bullmq.keys import invalid_queue_name  # a source is configured

        problem = invalid_queue_name(queue)
        if problem:
            raise ValueError(problem)
        return queue

    @field_validator("sql")
    @classmethod
    def _select(cls, sql: str) -> str:
        if not _SQL_START.match(sql):
            raise ValueError("expected one SELECT (or WITH ... SELECT) statement")
        unknown = sorted(set(_SQL_PLACEHOLDER.findall(sql)) - set(SQL_PARAMETERS))
        if unknown:
            raise ValueError(f"unknown parameter %({unknown[0]})s: the only parameter is %(since)s")
        rest = _SQL_PLACEHOLDER.sub("", sql).replace("%%", "")
        if "%" in rest:
            raise ValueError(
                "a literal % must be written %% (the query is sent with parameters; "
                "values only ever go in as %(since)s, never formatted into the text)"
            )
        return sql.strip().removesuffix(";").rstrip()

    @field_validator("job_id")
    @classmethod
    def _template(cls, job_id: str) -> str:
        from redis_runbook.bullmq.jobid import JobIdTemplate  # a source is configured

        JobIdTemplate.parse(job_id)
        return job_id

    @field_validator("data")
    @classmethod
    def _columns(cls, data: dict[str, str]) -> dict[str, str]:
        for key, column in data.items():
            if not key or not column:
                raise ValueError(f"expected job data key = column name, got {key!r} = {column!r}")
        return data

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, prefix: str | None) -> str | None:
        if prefix is not None and not prefix:
            raise ValueError("expected a non-empty prefix (or leave it out: [bullmq] prefixes[0])")
        return prefix

    @property
    def template(self) -> JobIdTemplate:
        """The parsed job id template."""
        from redis_runbook.bullmq.jobid import JobIdTemplate

        return JobIdTemplate.parse(self.job_id)

    @property
    def parameters(self) -> tuple[str, ...]:
        """The parameters the SQL uses (`since`)."""
        return tuple(dict.fromkeys(_SQL_PLACEHOLDER.findall(self.sql)))


class ReconstructConfig(Section):
    """`queues reconstruct`: where PostgreSQL is and which rows become which jobs.
    The DSN holds a password, so it comes from an env var, a file or a command."""

    dsn_env: str | None = None
    dsn_file: Path | None = None
    dsn_command: list[str] | None = None
    connect_timeout: float = Field(5.0, gt=0, le=120)
    statement_timeout: float = Field(300.0, gt=0, le=86_400)
    chunk_size: int = Field(1000, ge=1, le=1000)
    sources: list[Source] = Field(default_factory=new_list)

    @field_validator("dsn_command")
    @classmethod
    def _non_empty_command(cls, argv: list[str] | None) -> list[str] | None:
        if argv is not None and not argv:
            raise ValueError("expected a command as a list of arguments, got []")
        return argv

    @field_validator("sources")
    @classmethod
    def _unique_sources(cls, sources: list[Source]) -> list[Source]:
        names = [s.name for s in sources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"source names must be unique, got duplicates {duplicates}")
        return sources

    @model_validator(mode="after")
    def _one_dsn(self) -> ReconstructConfig:
        given = [
            key
            for key, value in (
                ("dsn_env", self.dsn_env),
                ("dsn_file", self.dsn_file),
                ("dsn_command", self.dsn_command),
            )
            if value
        ]
        if len(given) > 1:
            raise ValueError(f"choose one DSN source, got {' and '.join(given)}")
        if self.sources and not given:
            raise ValueError(
                "sources need a PostgreSQL DSN: set dsn_env, dsn_file or dsn_command "
                "(never the DSN itself: it holds the password)"
            )
        if self.dsn_file is not None and not self.dsn_file.is_file():
            raise ValueError(f"dsn_file: expected an existing file, got {str(self.dsn_file)!r}")
        return self
