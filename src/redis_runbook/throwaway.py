"""A private redis-server on a copy of data files: loopback, a free port, its own
directory, nothing saved. Used by `backup verify` (the restore drill) and by
`recover aof` / `diagnose` to rehearse an outcome (what would a cut AOF, or the
RDB, hold?) before anything live is touched.

The server dies with the tool (parent-death signal), never writes an RDB, never
rewrites its AOF, and is stopped (SHUTDOWN NOSAVE, else SIGKILL) whatever happens.
Also here: counting keys per database and category on any server (the live one
after a backup or restore, or a throwaway one).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

from redis_runbook.bgsave import RewriteTimeout, wait_no_rewrite
from redis_runbook.children import die_with_parent
from redis_runbook.config import Category, TargetConfig
from redis_runbook.errors import RunbookError
from redis_runbook.keyspace import count_keys, target_for_db
from redis_runbook.ports import free_port
from redis_runbook.readiness import wait_ready
from redis_runbook.replies import keyspace, parse_info
from redis_runbook.service.base import Launcher, on_host
from redis_runbook.service.process import wait_exit
from redis_runbook.target import make_client

START_ATTEMPTS = 3
#: Settings every throwaway server gets: no snapshots, no AOF rewrites, no limit.
BASE_SETTINGS: dict[str, str] = {
    "bind": "127.0.0.1",
    "protected-mode": "yes",
    "daemonize": "no",
    "save": "",
    "appendonly": "no",
    "appendfsync": "no",
    "auto-aof-rewrite-percentage": "0",
    "maxmemory": "0",
}


class ThrowawayError(RunbookError):
    """The throwaway server could not be started or read."""

    default_hint = "is redis-server installed here (Debian: apt-get install redis-server)?"


class ThrowawayServer:
    """redis-server in `workdir` with its data in `workdir/data` (put the files to
    load there before `start()`). Use as a context manager."""

    def __init__(
        self,
        workdir: Path,
        settings: Mapping[str, str] | None = None,
        executable: str = "",
        launcher: Launcher = on_host,
    ) -> None:
        self.workdir = workdir
        self.settings = {**BASE_SETTINGS, **(settings or {})}
        self.executable = executable or "redis-server"
        self.launcher = launcher  # the service's own redis-server (compose: its image)
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.data_dir.mkdir(parents=True, exist_ok=True)

    @property
    def data_dir(self) -> Path:
        """The server's `dir`."""
        return self.workdir / "data"

    @property
    def log_path(self) -> Path:
        """The server's log."""
        return self.workdir / "redis.log"

    def target(self) -> TargetConfig:
        """How to reach it."""
        return TargetConfig(url=f"redis://127.0.0.1:{self.port}/0", connect_timeout=5.0)

    def _write_conf(self) -> Path:
        directives = {
            **self.settings,
            "port": str(self.port),
            "dir": str(self.data_dir),
            "logfile": str(self.log_path),
        }
        conf = self.workdir / "redis.conf"
        lines = [f"{k} {v}" if v != "" else f'{k} ""' for k, v in directives.items()]
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def _tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()[-4:]
        except OSError:
            return ""
        return " | ".join(line.strip() for line in lines if line.strip())

    def _exited(self) -> str | None:
        code = self.process.poll() if self.process is not None else None
        return None if code is None else f"redis-server exited with status {code}"

    def start(self, timeout: float) -> float:
        """Start and wait until the data is loaded; returns the seconds waited.
        Retries on another port when the chosen one was taken meanwhile."""
        for attempt in range(START_ATTEMPTS):
            self.port = free_port()
            conf = self._write_conf()
            try:
                with (self.workdir / "redis.stderr").open("ab") as sink:
                    self.process = subprocess.Popen(
                        self.launcher([self.executable, str(conf)], [self.workdir]),
                        stdin=subprocess.DEVNULL,
                        stdout=sink,
                        stderr=sink,
                        cwd=self.workdir,
                        preexec_fn=die_with_parent(),  # a drill server dies with the tool
                    )
            except OSError as exc:
                raise ThrowawayError(f"cannot run {self.executable}: {exc.strerror}") from None
            try:
                return wait_ready(self.target(), timeout, gone=self._exited)
            except RunbookError as exc:
                self.stop()
                in_use = "Address already in use" in self._tail()
                if not in_use or attempt == START_ATTEMPTS - 1:
                    raise ThrowawayError(f"throwaway {exc.message}: {self._tail()}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self) -> None:
        """SHUTDOWN NOSAVE; SIGTERM when it does not go within 10 s (a `docker run`
        client passes it on to its container, where SIGKILL of the client would
        leave the container running; the server saves nothing: `save ""`), then
        SIGKILL."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(redis.RedisError, RunbookError):
            client = make_client(self.target())
            try:
                client.shutdown(nosave=True)
            finally:
                client.close()
        for signal_process in (process.terminate, process.kill):
            if wait_exit(process.pid, 10.0):
                break
            with contextlib.suppress(ProcessLookupError):
                signal_process()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10.0)

    def __enter__(self) -> ThrowawayServer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def newest_stream_entry_ms(target: TargetConfig) -> int | None:
    """The newest entry ID time (ms since the epoch) over every stream of every
    database: BullMQ appends to `<prefix>:<queue>:events` on every job change, so it
    is the time of the last write such data holds. None when there is no stream."""
    client = make_client(target)
    try:
        info = parse_info(str(client.execute_command("INFO", "keyspace")))
    finally:
        client.close()
    newest: int | None = None
    for space in keyspace(info):
        db_client = make_client(target_for_db(target, space.db), decode=False)
        try:
            for key in db_client.scan_iter(count=1000, _type="stream"):
                reply: Any = db_client.execute_command("XINFO", "STREAM", key)
                fields = dict(zip(reply[::2], reply[1::2], strict=False))
                last = fields.get(b"last-generated-id", b"0-0")
                ms = int(bytes(last).split(b"-", 1)[0])
                newest = ms if newest is None or ms > newest else newest
        finally:
            db_client.close()
    return newest


@dataclass
class Loaded:
    """What a throwaway server held after loading: keys per category, totals and
    the newest stream entry (ms)."""

    keys: dict[str, Any] = field(default_factory=dict)
    newest_ms: int | None = None
    load_seconds: float = 0.0


def load_and_count(
    workdir: Path,
    settings: Mapping[str, str],
    categories: Sequence[Category],
    timeout: float,
    launcher: Launcher = on_host,
) -> Loaded:
    """Start a throwaway server on what is in `workdir/data`, count, stop it.
    ThrowawayError when it does not load."""
    with ThrowawayServer(workdir, settings, launcher=launcher) as server:
        waited = server.start(timeout)
        try:
            keys = count_keys(server.target(), categories)
            newest = newest_stream_entry_ms(server.target())
        except redis.RedisError as exc:
            raise ThrowawayError(f"cannot read the throwaway server: {exc}") from None
        return Loaded(keys, newest, waited)


def aof_from_rdb(
    rdb: Path,
    workdir: Path,
    appenddirname: str,
    appendfilename: str,
    timeout: float,
    launcher: Launcher = on_host,
) -> Path:
    """Let Redis itself build an AOF from a copy of `rdb`: load it in a throwaway
    server (the service's own, through `launcher`), switch AOF on (which rewrites
    it from memory) and wait until the rewrite succeeded. Returns the AOF directory
    it wrote, under `workdir/data`, in the format of the version that will read it.
    `timeout` covers the load and the rewrite together. ThrowawayError when it cannot."""
    settings = {"dbfilename": rdb.name, "appenddirname": appenddirname,
                "appendfilename": appendfilename}  # fmt: skip
    server = ThrowawayServer(workdir, settings, launcher=launcher)
    shutil.copy2(rdb, server.data_dir / rdb.name)
    with server:
        remaining = max(timeout - server.start(timeout), 1.0)
        client = make_client(server.target())
        try:
            # CONFIG SET appendonly yes starts (or schedules) the rewrite before it replies.
            client.config_set("appendonly", "yes")
            _, info = wait_no_rewrite(client, remaining)
            if info.get("aof_enabled") != "1" or info.get("aof_last_bgrewrite_status") != "ok":
                raise ThrowawayError(f"the AOF rewrite of {rdb.name} failed")
        except RewriteTimeout:
            raise ThrowawayError(f"the AOF rewrite of {rdb.name} took over {timeout:g} s") from None
        except redis.RedisError as exc:
            raise ThrowawayError(f"cannot build the AOF in a throwaway server: {exc}") from None
        finally:
            client.close()
    return server.data_dir / appenddirname


def ensure_room(directory: Path, needed: int) -> None:
    """ThrowawayError when `directory`'s filesystem has less than `needed` bytes free."""
    stat = os.statvfs(directory)
    free = stat.f_bavail * stat.f_frsize
    if free < needed:
        raise ThrowawayError(
            f"not enough room in {directory} for a throwaway copy: {needed} bytes needed, "
            f"{free} free",
            "free space there, or point TMPDIR at a filesystem with room",
        )
