"""Launch and stop a local `redis-server` on a free loopback port in a directory of
its own. Shared by `redis-runbook lab`, the demo and the test suite.

The server is configured like the seed's production instance (AOF everysec,
noeviction, RDB snapshots) but with a small maxmemory. Secrets (requirepass, ACL
users) go into the generated redis.conf (mode 0600), never onto a command line.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import redis

from redis_runbook.config import TargetConfig
from redis_runbook.errors import LabError, RunbookError
from redis_runbook.ports import free_port
from redis_runbook.readiness import wait_ready
from redis_runbook.service.process import (
    pid_alive,
    read_pid,
    shutdown_pid,
    spawn_redis,
    wait_exit,
)
from redis_runbook.target import make_client

PRODUCTION_LIKE: dict[str, str] = {
    "bind": "127.0.0.1",
    "protected-mode": "yes",
    "appendonly": "yes",
    "appendfsync": "everysec",
    "maxmemory": "64mb",
    "maxmemory-policy": "noeviction",
    "save": "3600 1 300 100 60 10000",
    "dbfilename": "dump.rdb",
    "daemonize": "no",
}
START_ATTEMPTS = 3


#: How long a start waits for a fixed port that something holds.
PORT_WAIT_S = 10.0
IN_USE = "Address already in use"


class RedisServer:
    """One redis-server process in `workdir` (data in workdir/data).

    `settings` are redis.conf directives added to or overriding PRODUCTION_LIKE;
    `target_overrides` adjust how the tool connects (TLS files, password file).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        settings: Mapping[str, str] | None = None,
        target_overrides: Mapping[str, object] | None = None,
        executable: str = "redis-server",
    ) -> None:
        self.workdir = workdir
        self.port = port
        self.settings = dict(settings or {})
        self.target_overrides = dict(target_overrides or {})
        self.executable = executable
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        """The server's `dir`: dump.rdb and appendonlydir/ live here."""
        return self.workdir / "data"

    @property
    def conf_path(self) -> Path:
        """The generated redis.conf."""
        return self.workdir / "redis.conf"

    @property
    def log_path(self) -> Path:
        """The server log (`logfile`)."""
        return self.workdir / "redis.log"

    @property
    def stderr_path(self) -> Path:
        """stdout+stderr of the process: FATAL CONFIG FILE ERROR lands here."""
        return self.workdir / "redis.stderr"

    @property
    def pid_path(self) -> Path:
        """The server's pidfile."""
        return self.workdir / "redis.pid"

    @property
    def tls(self) -> bool:
        """True when the server listens with TLS only."""
        return "tls-port" in self.settings

    def target(self) -> TargetConfig:
        """How the tool reaches this server."""
        scheme = "rediss" if self.tls else "redis"
        fields: dict[str, object] = {
            "url": f"{scheme}://127.0.0.1:{self.port}/0",
            "connect_timeout": 2.0,
        }
        fields.update(self.target_overrides)
        return TargetConfig.model_validate(fields)

    def client(self) -> redis.Redis:
        """A client of this server, configured like the tool's own."""
        return make_client(self.target())

    def pid(self) -> int | None:
        """The pid from the pidfile, when that process is alive."""
        return read_pid(self.pid_path)

    def write_conf(self) -> None:
        """Write redis.conf (mode 0600: it may hold requirepass or ACL users)."""
        assert self.port is not None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        directives = dict(PRODUCTION_LIKE)
        directives.update(
            {
                "port": "0" if self.tls else str(self.port),
                "dir": str(self.data_dir),
                "logfile": str(self.log_path),
                "pidfile": str(self.pid_path),
            }
        )
        if self.tls:
            directives["tls-port"] = str(self.port)
        directives.update({k: v for k, v in self.settings.items() if k != "tls-port"})
        lines = []
        for key, value in directives.items():
            values = value.split("\n") if key == "user" else [value]
            lines += [f"{key} {v}" if v != "" else f'{key} ""' for v in values]
        fd = os.open(self.conf_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("\n".join(lines) + "\n")

    def start(self, timeout: float = 15.0) -> None:
        """Start the server and wait until it answers PING with the dataset loaded.
        Picks a free port when none was given, and another one if that port was
        taken meanwhile; a given port (a restart: configs point at it) that is held
        is waited for, up to PORT_WAIT_S."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        fixed_port = self.port is not None
        attempt = 0
        port_deadline = time.monotonic() + PORT_WAIT_S
        while True:
            attempt += 1
            if not fixed_port:
                self.port = free_port()
            self.write_conf()
            self.process = spawn_redis(self.executable, self.conf_path, self.stderr_path)
            try:
                self.wait_ready(timeout)
                return
            except LabError:
                in_use = IN_USE in self._tail(self.log_path, 5)
                if not in_use:
                    raise
                if fixed_port and time.monotonic() > port_deadline:
                    raise
                if not fixed_port and attempt >= START_ATTEMPTS:
                    raise
                if fixed_port:
                    time.sleep(0.1)

    def wait_ready(self, timeout: float) -> None:
        """Poll until PING answers and INFO says loading:0, or raise LabError with
        the server's last words (log and stderr)."""

        def exited() -> str | None:
            if self.process is not None and self.process.poll() is not None:
                return f"redis-server exited with status {self.process.returncode} during start"
            return None

        try:
            wait_ready(self.target(), timeout, gone=exited)
        except RunbookError as exc:
            raise LabError(
                f"{exc.message}: {self.last_words()}",
                f"read {self.log_path} and {self.stderr_path}",
            ) from None

    def last_words(self) -> str:
        """The most telling lines the server left: stderr first, then the log."""
        text = self._tail(self.stderr_path, 6) or self._tail(self.log_path, 6)
        return " | ".join(line.strip() for line in text.splitlines() if line.strip())

    @staticmethod
    def _tail(path: Path, lines: int) -> str:
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, save: bool = True, timeout: float = 15.0) -> None:
        """Graceful stop: SHUTDOWN SAVE (or NOSAVE); SIGTERM if Redis does not answer;
        waits for the process to exit, with a deadline."""
        pid = self.pid() or (self.process.pid if self.process else None)
        if pid is None or not pid_alive(pid):
            self._reap()
            return
        try:
            shutdown_pid(pid, self.target(), save, timeout, self.log_path)
        except RunbookError as exc:
            raise LabError(exc.message, exc.hint) from None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send a signal (SIGKILL by default: a crash, no save) and wait for the exit."""
        pid = self.pid() or (self.process.pid if self.process else None)
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        wait_exit(pid, 10.0)

    def _reap(self) -> None:
        if self.process is not None:
            self.process.poll()
