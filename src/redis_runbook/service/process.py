"""`process` backend: a redis-server started from PATH with a redis.conf, tracked by
its pidfile (the lab, the tests, hosts without a service manager)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import redis

from redis_runbook.bgsave import save_deadline
from redis_runbook.config import ServiceConfig, TargetConfig
from redis_runbook.redislog import since_last_start
from redis_runbook.service.base import (
    SAVE_FAILED_HINT,
    RunState,
    Service,
    ServiceError,
    ServiceState,
    parse_owner,
    run_command,
)
from redis_runbook.target import make_client


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists and has not exited. Reaps it first
    when it is our own child; a zombie someone else has not reaped yet (a container
    init can be slow) counts as exited."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    except ChildProcessError:
        pass  # not our child: its parent (or init) reaps it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return proc_state(pid) != "Z"


def read_pid(pid_file: Path) -> int | None:
    """The pid in a pidfile when that process is alive."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def proc_state(pid: int) -> str | None:
    """The one-letter state of /proc/<pid>/stat (R, S, D, T, Z...), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def wait_exit(pid: int, timeout: float) -> bool:
    """Poll until `pid` is gone; False when it is still there at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.02)
    return False


def spawn_redis(executable: str, conf: Path, output: Path) -> subprocess.Popen[bytes]:
    """Start `redis-server conf` in its own session (it outlives the CLI), with
    stdout and stderr appended to `output` (FATAL CONFIG FILE ERROR goes there)."""
    with output.open("ab") as sink:
        return subprocess.Popen(
            [executable, str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=sink,
            start_new_session=True,
            cwd=conf.parent,
        )


def tail_lines(path: Path | None, count: int) -> list[str]:
    """The last `count` lines of a text file (empty when unreadable)."""
    if path is None:
        return []
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 256 * count))
            data = handle.read().decode(errors="replace")
    except OSError:
        return []
    return data.splitlines()[-count:]


def shutdown_pid(
    pid: int, target: TargetConfig, save: bool, timeout: float, log: Path | None
) -> None:
    """Stop the redis-server `pid` answering at `target`: continue it if it is
    stopped (hung), SHUTDOWN SAVE|NOSAVE, SIGTERM when it does not answer, then wait
    for the exit with a deadline: `timeout`, or with `save` as long as a save of
    this dataset may take (a 4 GiB SHUTDOWN SAVE outlasts 30 s). ServiceError when
    the save is refused (the server keeps running) or the process does not exit."""
    if proc_state(pid) in ("T", "t"):
        os.kill(pid, signal.SIGCONT)  # a stopped (hung) process can neither save nor exit
    client = make_client(target)
    try:
        if save:
            with contextlib.suppress(redis.RedisError):
                timeout = max(timeout, save_deadline(client))
        client.shutdown(save=save, nosave=not save)
    except redis.ConnectionError:
        pass  # expected: the server closed the connection as it exited
    except redis.ResponseError as exc:
        raise ServiceError(
            f"SHUTDOWN {'SAVE' if save else 'NOSAVE'} refused: {exc}", SAVE_FAILED_HINT
        ) from None
    except redis.RedisError:
        # Unreachable (hung, wrong auth): SIGTERM makes Redis save and exit too.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    finally:
        client.close()
    if not wait_exit(pid, timeout):
        raise ServiceError(
            f"redis-server (pid {pid}) did not exit within {timeout:.0f} s",
            f"read {log} (still saving?); if it is hung: kill -CONT {pid}; kill {pid}",
        )


class ProcessService(Service):
    """redis-server started directly, tracked by `pid_file`."""

    executable = "redis-server"

    def __init__(self, service: ServiceConfig, target: TargetConfig) -> None:
        if service.redis_conf is None or service.pid_file is None:
            raise ServiceError(
                "service kind 'process' needs [service] redis_conf and pid_file",
                "redis-runbook config validate",
            )
        self.conf = service.redis_conf
        self.pid_file = service.pid_file
        self.log_file = service.log_file
        self.data_dir = service.data_dir
        self.owner = parse_owner(service.owner)
        self.target = target
        self._spawned: subprocess.Popen[bytes] | None = None
        self._output_start = 0

    @property
    def output_file(self) -> Path:
        """Where the process' stdout/stderr go: next to the log, `.stderr`."""
        base = self.log_file or self.conf
        return base.with_suffix(".stderr")

    def describe(self) -> str:
        return f"redis-server process ({self.conf})"

    def pid(self) -> int | None:
        """The pid from the pidfile when that process exists."""
        return read_pid(self.pid_file)

    def state(self) -> ServiceState:
        pid = self.pid()
        spawned = self._spawned
        if pid is None and spawned is not None:
            # Started by this object: Redis writes its pidfile only once its config
            # is loaded, so until then (or when it died first) the child tells.
            code = spawned.poll()
            if code is None:
                return ServiceState(RunState.RUNNING, spawned.pid, f"pid {spawned.pid} (starting)")
            detail = f"redis-server (pid {spawned.pid}) exited with status {code}"
            if code == 0:  # `daemonize yes`: the child writes the pidfile a moment later
                detail += f" (daemonized?) and no live process is in {self.pid_file}"
            return ServiceState(RunState.STOPPED, detail=detail, exit_code=code)
        if pid is None:
            return ServiceState(RunState.STOPPED, detail=f"no live process in {self.pid_file}")
        letter = proc_state(pid)
        if letter in ("T", "t"):
            return ServiceState(RunState.HUNG, pid, "process is stopped (SIGSTOP)")
        if letter == "Z":
            return ServiceState(RunState.HUNG, pid, "process is a zombie")
        return ServiceState(RunState.RUNNING, pid, f"pid {pid}")

    def start(self) -> None:
        if self.pid() is not None:
            return
        try:
            self._output_start = self.output_file.stat().st_size
        except OSError:
            self._output_start = 0
        self._spawned = spawn_redis(self.executable, self.conf, self.output_file)

    def stop(self, save: bool = True, timeout: float = 30.0) -> None:
        pid = self.pid()
        if pid is not None:
            shutdown_pid(pid, self.target, save, timeout, self.log_file)

    def fence(self, timeout: float = 30.0) -> str:
        """SIGKILL: a hung (SIGSTOPped) server continued for a SHUTDOWN would first
        answer the writes queued on its sockets."""
        pid = self.pid()
        if pid is None:
            return f"no live process in {self.pid_file}"
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if not wait_exit(pid, timeout):
            raise ServiceError(
                f"redis-server (pid {pid}) did not exit within {timeout:g} s of SIGKILL",
                f"ps -o pid,stat,cmd -p {pid}",
            )
        return f"killed (pid {pid}, SIGKILL)"

    def logs(self, tail: int = 200) -> list[str]:
        return tail_lines(self.log_file, tail) + tail_lines(self.output_file, tail)

    def start_logs(self, tail: int = 200) -> list[str]:
        """The log since the last start, and what the process printed on stderr since
        `start()` (the stderr file keeps the complaints of earlier starts too)."""
        output: list[str] = []
        if self._spawned is not None:
            try:
                with self.output_file.open("rb") as handle:
                    handle.seek(self._output_start)
                    output = handle.read().decode(errors="replace").splitlines()[-tail:]
            except OSError:
                output = []
        return since_last_start(tail_lines(self.log_file, tail)) + output

    def run_tool(
        self, argv: list[str], stdin: str | None = None, timeout: float = 300.0
    ) -> subprocess.CompletedProcess[str]:
        return run_command(argv, stdin=stdin, timeout=timeout)
