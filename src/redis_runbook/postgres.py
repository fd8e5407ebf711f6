"""PostgreSQL access for `queues reconstruct` (psycopg 3).

The DSN holds the password, so it comes from `[reconstruct] dsn_env`, `dsn_file`
or `dsn_command` (never from the config file itself) and is only ever shown
redacted (`postgresql://runbook:***@db:5432/cerniq`). Every connection has a
connect timeout and a statement timeout, is read-only
(`default_transaction_read_only`), and names itself `redis-runbook`. Errors
become one line naming the source and the redacted server; the password is
scrubbed from any message that might echo it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg.conninfo import conninfo_to_dict

from redis_runbook.config import secrets
from redis_runbook.config.reconstruct import ReconstructConfig
from redis_runbook.errors import EXIT_REFUSED, ConfigError, RunbookError

APPLICATION_NAME = "redis-runbook"
AUTH_SQLSTATES = ("28P01", "28000")


class PostgresAuthFailed(ConfigError):
    """PostgreSQL rejected the DSN's credentials (or the database does not exist);
    nothing was done."""

    default_hint = "check the DSN [reconstruct] dsn_env / dsn_file / dsn_command names"


class PostgresUnavailable(RunbookError):
    """PostgreSQL could not be reached; nothing was done."""

    exit_code = EXIT_REFUSED
    default_hint = "is PostgreSQL up? pg_isready -h HOST -p PORT; then re-run"


class SourceError(ConfigError):
    """A source's SQL failed or its rows do not fit the job mapping; nothing was
    enqueued for it."""

    default_hint = (
        "fix the source in [[reconstruct.sources]], then check it: "
        "redis-runbook --dry-run queues reconstruct"
    )


@dataclass(frozen=True)
class Dsn:
    """A resolved DSN: `value` (with the password) is never printed; `display` is."""

    value: str = field(repr=False)
    display: str
    password: str | None = field(default=None, repr=False)
    host: str = "localhost"
    port: str = "5432"

    def __str__(self) -> str:
        return self.display

    def scrub(self, text: str) -> str:
        """`text` with the password (plain or URL-quoted) replaced by ***."""
        if self.password:
            for form in {self.password, quote(self.password, safe="")}:
                text = text.replace(form, "***")
        return text


def parse_dsn(value: str, key: str) -> Dsn:
    """Check that `value` is a PostgreSQL DSN (URL or key=value) and redact it.
    The error never quotes the value: it may hold the password."""
    try:
        parts = conninfo_to_dict(value)
    except psycopg.Error:
        raise ConfigError(
            f"{key}: not a PostgreSQL DSN (expected postgresql://user:password@host:port/db "
            "or host=... dbname=... user=... password=...)",
            "check the DSN the config names (its value is not shown: it holds the password)",
        ) from None
    password = parts.get("password")
    user = str(parts.get("user") or "")
    host = str(parts.get("host") or parts.get("hostaddr") or "localhost")
    port = str(parts.get("port") or "5432")
    dbname = str(parts.get("dbname") or user or "")
    auth = f"{quote(user, safe='')}{':***' if password else ''}@" if user or password else ""
    netloc = host if host.startswith("/") else f"{host}:{port}"
    return Dsn(
        value,
        f"postgresql://{auth}{netloc}/{dbname}",
        str(password) if password else None,
        host,
        port,
    )


def resolve_dsn(config: ReconstructConfig, env: Mapping[str, str] | None = None) -> Dsn:
    """The DSN from its configured source; ConfigError when none is configured or
    the source cannot produce it."""
    if config.dsn_env:
        key = "reconstruct.dsn_env"
        value = secrets.from_env(config.dsn_env, key, env)
    elif config.dsn_file:
        key = "reconstruct.dsn_file"
        value = secrets.from_file(config.dsn_file, key)
    elif config.dsn_command:
        key = "reconstruct.dsn_command"
        value = secrets.from_command(config.dsn_command, key)
    else:
        raise ConfigError(
            "[reconstruct] names no PostgreSQL DSN",
            "set dsn_env, dsn_file or dsn_command in [reconstruct] (docs/configuration.md)",
        )
    return parse_dsn(value, key)


def connect_options(config: ReconstructConfig) -> dict[str, Any]:
    """Keyword arguments of psycopg.connect: timeouts, read-only, UTC, our name."""
    statement_ms = int(config.statement_timeout * 1000)
    return {
        "connect_timeout": max(1, math.ceil(config.connect_timeout)),
        "application_name": APPLICATION_NAME,
        "options": (
            f"-c statement_timeout={statement_ms} -c default_transaction_read_only=on "
            "-c TimeZone=UTC"
        ),
    }


def first_line(text: str) -> str:
    """The first non-empty line of an error message."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _server_message(exc: psycopg.Error) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    text = primary or first_line(str(exc)) or type(exc).__name__
    return text.removeprefix("connection failed: ")


def connection_error(exc: psycopg.Error, dsn: Dsn, source: str) -> RunbookError:
    """A failed connect as one line naming the source and the redacted server."""
    text = dsn.scrub(_server_message(exc))
    for marker in ("FATAL:  ", "FATAL: "):
        if marker in text:
            text = text.split(marker, 1)[1]
    where = f"source {source}: PostgreSQL {dsn.display}"
    lowered = text.lower()
    if exc.sqlstate in AUTH_SQLSTATES or "password authentication failed" in lowered:
        return PostgresAuthFailed(f"{where}: authentication failed: {text}")
    if exc.sqlstate == "3D000" or ("database" in lowered and "does not exist" in lowered):
        return PostgresAuthFailed(f"{where}: {text}")
    return PostgresUnavailable(
        f"{where}: cannot connect: {text}",
        f"is PostgreSQL up? pg_isready -h {dsn.host} -p {dsn.port}; then re-run",
    )


def query_error(exc: psycopg.Error, dsn: Dsn, source: str) -> RunbookError:
    """A failed query (or a connection lost during it) naming the source."""
    if isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None:
        return PostgresUnavailable(
            f"source {source}: PostgreSQL {dsn.display}: connection lost: "
            f"{dsn.scrub(_server_message(exc))}"
        )
    code = f" [{exc.sqlstate}]" if exc.sqlstate else ""
    return SourceError(f"source {source}: SQL error{code}: {dsn.scrub(_server_message(exc))}")


def connect(dsn: Dsn, config: ReconstructConfig, source: str) -> psycopg.Connection[Any]:
    """A read-only connection; PostgresAuthFailed / PostgresUnavailable on failure."""
    try:
        return psycopg.connect(dsn.value, **connect_options(config))
    except psycopg.Error as exc:
        raise connection_error(exc, dsn, source) from None


async def aconnect(
    dsn: Dsn, config: ReconstructConfig, source: str
) -> psycopg.AsyncConnection[Any]:
    """The asyncio twin of `connect`."""
    try:
        return await psycopg.AsyncConnection.connect(dsn.value, **connect_options(config))
    except psycopg.Error as exc:
        raise connection_error(exc, dsn, source) from None
