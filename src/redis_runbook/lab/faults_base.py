"""Shared pieces of fault injection: the result type, the copies kept of every file a
fault changes, and starting a server on its existing redis.conf to let it fail for
real (so its log holds the genuine error)."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from redis_runbook.errors import EXIT_USAGE, LabError
from redis_runbook.lab.server import IN_USE, PORT_WAIT_S, RedisServer
from redis_runbook.persistence.layout import DataLayout, layout_from_settings, read_redis_conf
from redis_runbook.service.process import pid_alive, spawn_redis, tail_lines
from redis_runbook.target import make_client

BACKUP_DIR = "fault-backups"
START_TIMEOUT_S = 10.0


class UnknownFault(LabError):
    """The scenario name is not one `lab break` knows; nothing was changed."""

    exit_code = EXIT_USAGE


@dataclass
class Injected:
    """What a fault did. `files` are the data files it damaged, `backups` the copies
    of their originals; `release()` ends a fault that holds something (blocked
    clients, a stopped process, a tmpfs) — a no-op for the others."""

    scenario: str
    summary: str
    files: list[Path] = field(default_factory=list)
    backups: list[Path] = field(default_factory=list)
    server_state: str = "running"
    undo: Callable[[], None] | None = field(default=None, repr=False)

    def release(self) -> None:
        """Undo what can be undone without touching data (idempotent)."""
        if self.undo is not None:
            undo, self.undo = self.undo, None
            undo()


def stamp() -> str:
    """A UTC stamp for backup names: 20261126T104028Z."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def backup_dir(server: RedisServer) -> Path:
    """Where faults keep the originals of what they change (outside the data dir)."""
    directory = server.workdir / BACKUP_DIR / stamp()
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def keep_copy(server: RedisServer, path: Path) -> Path:
    """Copy `path` into the fault backup dir before it is damaged; returns the copy."""
    target = backup_dir(server) / path.name
    shutil.copy2(path, target)
    return target


def server_layout(server: RedisServer) -> DataLayout:
    """The data files of `server`, from its redis.conf."""
    settings = read_redis_conf(server.conf_path) if server.conf_path.exists() else {}
    return layout_from_settings(
        server.data_dir, settings, str(server.conf_path), prefer_conf_dir=True
    )


def client(server: RedisServer, timeout: float = 5.0) -> redis.Redis:
    """A tool client of the server with a short command timeout."""
    target = server.target().model_copy(update={"command_timeout": timeout})
    return make_client(target)


def running(server: RedisServer) -> bool:
    """True when the server's process is alive."""
    return server.pid() is not None


def write_markers(server: RedisServer, count: int = 200, prefix: str = "fault:data") -> None:
    """Write `count` small keys (created by the fault) so the data files have content."""
    conn = client(server)
    try:
        pipe = conn.pipeline(transaction=False)
        for n in range(count):
            pipe.set(f"{prefix}:{n}", f"value-{n}-" + "x" * 40)
        pipe.set("fault:crc-marker", "0123456789abcdef")
        pipe.execute()
    except redis.RedisError as exc:
        raise LabError(f"cannot write to the server before the fault: {exc}") from None
    finally:
        conn.close()


def save(server: RedisServer) -> None:
    """A synchronous SAVE (the RDB faults need a fresh dump.rdb)."""
    conn = client(server, timeout=30.0)
    try:
        conn.execute_command("SAVE")
    except redis.RedisError as exc:
        raise LabError(f"SAVE before the fault failed: {exc}") from None
    finally:
        conn.close()


def attempt_start(server: RedisServer, timeout: float = START_TIMEOUT_S) -> str:
    """Start redis-server on its current redis.conf (not regenerated) and wait until it
    exits or answers. Returns `exited` (the expected outcome for a fault) or
    `running`. A start that fails only because something holds the port for a moment
    is tried again (up to PORT_WAIT_S): the fault's own failure must be the one logged."""
    port_deadline = time.monotonic() + PORT_WAIT_S
    while True:
        outcome = _attempt_start(server, timeout)
        if outcome == "running" or IN_USE not in "".join(tail_lines(server.log_path, 3)):
            return outcome
        if time.monotonic() > port_deadline:
            return outcome
        time.sleep(0.1)


def _attempt_start(server: RedisServer, timeout: float) -> str:
    process = spawn_redis(server.executable, server.conf_path, server.stderr_path)
    server.process = process
    deadline = time.monotonic() + timeout
    probe = server.target().model_copy(update={"connect_timeout": 0.2, "command_timeout": 0.5})
    conn = make_client(probe)
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return "exited"
            with contextlib.suppress(redis.RedisError):
                if conn.execute_command("PING"):
                    return "running"
            time.sleep(0.02)
    finally:
        conn.close()
    return "exited" if process.poll() is not None else "running"


def kill_if_running(server: RedisServer) -> bool:
    """SIGKILL the server (a crash: nothing saved); True when it was running."""
    pid = server.pid()
    if pid is None:
        return False
    server.kill()
    if pid_alive(pid):
        raise LabError(f"redis-server pid {pid} survived SIGKILL")
    return True
