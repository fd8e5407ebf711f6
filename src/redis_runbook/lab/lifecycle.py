"""`lab up | down | status`: one sandbox redis-server per state directory.

Layout of the state directory:
    lab.json             the port the lab uses (kept across up/down)
    redis-runbook.toml   config pointing the tool at the lab (service kind `process`)
    redis.conf, redis.log, redis.stderr, redis.pid
    data/                dump.rdb and appendonlydir/
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

from redis_runbook.config import toml
from redis_runbook.errors import LabError
from redis_runbook.lab.borglab import ensure_repo
from redis_runbook.lab.layout import POSTGRES_DIR, STATE_NAME
from redis_runbook.lab.server import RedisServer
from redis_runbook.ports import port_free

LAB_MAXMEMORY = "64mb"
CONFIG_NAME = "redis-runbook.toml"
#: The sections `lab up` writes; a rewrite of the lab config keeps every other one.
LAB_SECTIONS = frozenset({"target", "service", "server", "backup"})


def state_dir(explicit: Path | None = None) -> Path:
    """`--dir`, else $XDG_STATE_HOME/redis-runbook/lab, else ~/.local/state/redis-runbook/lab."""
    if explicit is not None:
        return explicit.expanduser().resolve()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "redis-runbook" / "lab"


@dataclass(frozen=True)
class LabStatus:
    """Where the lab is and whether it runs."""

    dir: Path
    running: bool
    pid: int | None
    port: int | None
    url: str | None
    config_path: Path

    def to_json(self) -> dict[str, object]:
        """JSON-ready dict."""
        data = asdict(self)
        data["dir"] = str(self.dir)
        data["config_path"] = str(self.config_path)
        return data


def _saved_port(directory: Path) -> int | None:
    try:
        port = json.loads((directory / STATE_NAME).read_text())["port"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return port if isinstance(port, int) else None


def has_postgres(directory: Path) -> bool:
    """True when the lab in `directory` has a PostgreSQL cluster (`--with-postgres`
    once): it stays part of the lab, whether or not the flag is given again."""
    return (directory / POSTGRES_DIR / "data" / "PG_VERSION").is_file()


def kept_sections(directory: Path) -> dict[str, object]:
    """The sections of the lab's current config to carry over when the lab rewrites
    it: every section the lab does not write itself (an operator's `[runbook]
    state_dir`, `[thresholds]`, `[alerts]`...), and `[reconstruct]` unless it is the
    lab PostgreSQL's and that cluster is gone."""
    try:
        current = tomllib.loads((directory / CONFIG_NAME).read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    kept = {name: value for name, value in current.items() if name not in LAB_SECTIONS}
    reconstruct = kept.get("reconstruct")
    lab_dsn = isinstance(reconstruct, dict) and str(reconstruct.get("dsn_file", "")).startswith(
        str(directory)
    )
    if lab_dsn and not has_postgres(directory):
        del kept["reconstruct"]
    return kept


def lab_server(directory: Path, settings: dict[str, str] | None = None) -> RedisServer:
    """The RedisServer of a lab directory (port from lab.json when there is one)."""
    return RedisServer(directory, port=_saved_port(directory), settings=settings)


def status(directory: Path) -> LabStatus:
    """Is the lab in `directory` running, and where."""
    server = lab_server(directory)
    pid = server.pid()
    port = server.port
    return LabStatus(
        dir=directory,
        running=pid is not None,
        pid=pid,
        port=port,
        url=f"redis://127.0.0.1:{port}/0" if port else None,
        config_path=directory / CONFIG_NAME,
    )


def _write_lab_config(server: RedisServer, maxmemory: str) -> None:
    config: dict[str, object] = {
        "target": {"url": f"redis://127.0.0.1:{server.port}/0"},
        "service": {
            "kind": "process",
            "data_dir": str(server.data_dir),
            "owner": f"{os.getuid()}:{os.getgid()}",
            "redis_conf": str(server.conf_path),
            "pid_file": str(server.pid_path),
            "log_file": str(server.log_path),
        },
        "server": {"maxmemory": maxmemory},
    }
    backup = ensure_repo(server.workdir)
    if backup is not None:
        config["backup"] = backup
    config.update(kept_sections(server.workdir))
    header = "# Written by `redis-runbook lab up`: points redis-runbook at the lab Redis.\n\n"
    (server.workdir / CONFIG_NAME).write_text(header + toml.dumps(config))
    (server.workdir / STATE_NAME).write_text(json.dumps({"port": server.port}) + "\n")


def up(directory: Path, maxmemory: str = LAB_MAXMEMORY) -> LabStatus:
    """Start the lab Redis (idempotent: a running lab is left as it is)."""
    current = status(directory)
    if current.running:
        return current
    directory.mkdir(parents=True, exist_ok=True)
    server = lab_server(directory, settings={"maxmemory": maxmemory})
    if server.port is not None and not port_free(server.port):
        server.port = None  # taken by something else since last time: pick a new one
    server.start()
    _write_lab_config(server, maxmemory)
    return status(directory)


def down(directory: Path) -> LabStatus:
    """Stop the lab Redis gracefully (SHUTDOWN SAVE), and its PostgreSQL if it has
    one (`lab up --with-postgres`). Their data stays on disk."""
    if not (directory / STATE_NAME).exists():
        raise LabError(f"no lab in {directory}", "redis-runbook lab up")
    lab_server(directory).stop(save=True)
    from redis_runbook.lab import pglab  # psycopg only when needed

    pglab.down(directory)
    return status(directory)
