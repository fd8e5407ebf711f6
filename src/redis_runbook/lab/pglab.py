"""`lab up --with-postgres`: the lab's PostgreSQL next to its Redis.

In the lab directory:
    postgres/            the cluster (owned by the unprivileged user it runs as)
    postgres.dsn         the DSN with the generated password (mode 0600)
and the lab's redis-runbook.toml gains a `[reconstruct]` section (dsn_file plus
the seed's two sources) so that `queues reconstruct` works against the lab at once.
The example tables are created and filled when the database is first created.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from redis_runbook.config import toml
from redis_runbook.errors import LabError
from redis_runbook.lab.layout import POSTGRES_DIR as PG_DIR
from redis_runbook.lab.pg_example import ExampleRows, create_example, example_sources
from redis_runbook.lab.postgres import PostgresServer

DSN_NAME = "postgres.dsn"
CONFIG_NAME = "redis-runbook.toml"
HEADER = "# Written by `redis-runbook lab up`: points redis-runbook at the lab Redis.\n\n"


@dataclass(frozen=True)
class LabPostgres:
    """Where the lab's PostgreSQL runs; `dsn_file` holds its DSN (never printed)."""

    pid: int | None
    port: int | None
    dsn_file: Path
    display: str

    def to_json(self) -> dict[str, object]:
        """JSON-ready dict (no secret in it)."""
        return {
            "pid": self.pid,
            "port": self.port,
            "dsn_file": str(self.dsn_file),
            "dsn": self.display,
        }


def lab_server(directory: Path) -> PostgresServer:
    """The lab's PostgresServer (its port from its own runbook.conf)."""
    return PostgresServer(directory / PG_DIR)


def _saved_password(dsn_file: Path) -> str | None:
    try:
        value = conninfo_to_dict(dsn_file.read_text().strip()).get("password")
    except (OSError, psycopg.Error):
        return None
    return str(value) if value else None


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    path.chmod(0o600)


def _add_reconstruct_section(directory: Path, dsn_file: Path) -> None:
    config_path = directory / CONFIG_NAME
    try:
        data = tomllib.loads(config_path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise LabError(f"cannot read the lab config {config_path}: {exc}") from None
    data["reconstruct"] = {"dsn_file": str(dsn_file), "sources": example_sources()}
    config_path.write_text(HEADER + toml.dumps(data))


def up(directory: Path) -> LabPostgres:
    """Start (initialising on first use) the lab PostgreSQL, fill the example
    tables once, write the DSN file and the `[reconstruct]` config section."""
    server = lab_server(directory)
    dsn_file = directory / DSN_NAME
    password = _saved_password(dsn_file)
    if server.initialized() and password is None:
        raise LabError(
            f"the lab PostgreSQL in {server.workdir} exists but {dsn_file} (its password) is gone",
            f"lab down --dir {directory}; then move {server.workdir} aside and run lab up again",
        )
    if password is None:
        password = secrets.token_urlsafe(24)
    server.init(password)
    server.start()
    created = server.create_database(password)
    dsn = server.dsn(password)
    _write_private(dsn_file, dsn + "\n")
    if created:
        create_example(dsn, ExampleRows())
    _add_reconstruct_section(directory, dsn_file)
    return status(directory)


def status(directory: Path) -> LabPostgres:
    """Is the lab PostgreSQL running, and where."""
    server = lab_server(directory)
    port = server.port
    return LabPostgres(
        pid=server.pid(),
        port=port,
        dsn_file=directory / DSN_NAME,
        display=f"postgresql://runbook:***@127.0.0.1:{port}/cerniq" if port else "-",
    )


def down(directory: Path) -> None:
    """Stop the lab PostgreSQL if there is one (pg_ctl stop -m fast)."""
    if (directory / PG_DIR).is_dir():
        lab_server(directory).stop()
