"""Evidence for `diagnose`, collected read-only and under deadlines: the health
snapshot, the service state, the server's log since its last start, the kernel's
OOM-killer lines, the data dir's free space and inodes, a second look at the OOM
error count, for a server that does not answer the stall probe (stall.py) and a
CPU sample, and — when the server is down — offline checks of the AOF and RDB
with Redis' own tools.

Nothing here changes anything: no command that writes is sent, no file is written.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import redis

from redis_runbook.backup.available import Backups, list_backups
from redis_runbook.checks import evaluate
from redis_runbook.config import Config
from redis_runbook.errors import RunbookError, TargetUnavailable
from redis_runbook.persistence.files import OfflineEvidence, data_layout, offline_checks
from redis_runbook.persistence.layout import (
    DataLayout,
)
from redis_runbook.redislog import (
    LogMatch,
    line_time,
    match_lines,
    since_last_start,
)
from redis_runbook.replies import error_counts, parse_info
from redis_runbook.service import RunState, Service, ServiceState, make_service
from redis_runbook.service.process import ProcessService, proc_state, tail_lines
from redis_runbook.snapshot import Snapshot, take_snapshot
from redis_runbook.stall import StallProbe, probe_stall
from redis_runbook.status import CheckResult
from redis_runbook.target import make_client

T = TypeVar("T")

LOG_TAIL = 200
DISK_FULL_BYTES = 1024 * 1024
CPU_SAMPLE_S = 0.3
KERNEL_TIMEOUT_S = 3.0
BACKUPS_TIMEOUT_S = 60.0
_KILLED = re.compile(r"Killed process (?P<pid>\d+) \((?P<name>[^)]*)\)")
_KERNEL_TS = re.compile(r"^\[\s*(?P<ts>\d+\.\d+)\]")


@dataclass(frozen=True)
class LogEvidence:
    """Pattern matches in the server's log lines since its last start."""

    sources: tuple[str, ...] = ()
    lines_read: int = 0
    matches: tuple[LogMatch, ...] = ()
    error: str | None = None

    def has(self, *keys: str) -> bool:
        """True when any of `keys` matched."""
        return any(m.key in keys for m in self.matches)

    def find(self, *keys: str) -> list[LogMatch]:
        """The matches of `keys`, in log order."""
        return [m for m in self.matches if m.key in keys]


@dataclass(frozen=True)
class OomKill:
    """A kernel OOM-killer line about a redis process."""

    pid: int
    process: str
    line: str
    age_s: float | None


@dataclass(frozen=True)
class KernelEvidence:
    """What the kernel log says about OOM kills (or why it could not be read)."""

    readable: bool
    source: str | None = None
    kills: tuple[OomKill, ...] = ()
    note: str | None = None


@dataclass(frozen=True)
class DiskEvidence:
    """The data dir: does it exist, can it be written, how much room is left."""

    path: Path
    exists: bool
    writable: bool | None = None
    free_bytes: int | None = None
    total_bytes: int | None = None
    free_inodes: int | None = None
    total_inodes: int | None = None
    error: str | None = None

    @property
    def full(self) -> bool:
        """Less than 1 MiB free, or no free inode."""
        if self.free_bytes is not None and self.free_bytes < DISK_FULL_BYTES:
            return True
        return bool(self.total_inodes) and self.free_inodes == 0


@dataclass(frozen=True)
class CpuSample:
    """CPU use of a server process over a short interval."""

    pid: int
    state: str | None
    percent: float


@dataclass
class Evidence:
    """Everything `diagnose` looked at."""

    config: Config
    snapshot: Snapshot
    checks: list[CheckResult]
    service: Service | None
    state: ServiceState
    logs: LogEvidence
    kernel: KernelEvidence
    disk: DiskEvidence
    layout: DataLayout
    stale_pid: int | None = None
    #: OOM replies counted between the snapshot and a second look at errorstats
    #: at the end of collecting (None when not read): writes refused right now.
    oom_growth: int | None = None
    cpu: CpuSample | None = None
    stall: StallProbe | None = None
    offline: OfflineEvidence | None = None
    #: The archives there are (listed for a server that is down, None otherwise):
    #: a restore is advised only when one can be restored.
    backups: Backups | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def down(self) -> bool:
        """Unreachable and no live process (or the manager cannot be asked)."""
        return not self.snapshot.reachable and self.state.state in (
            RunState.STOPPED,
            RunState.UNKNOWN,
        )


def bounded(fn: Callable[[], T], timeout: float, default: T) -> tuple[T, bool]:
    """Run `fn` in a daemon thread; (its result, True), or (`default`, False) when it
    does not return within `timeout` (the thread is left to finish on its own)."""
    box: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            box.append(fn())
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if errors:
        raise errors[0]
    return (box[0], True) if box else (default, False)


def read_logs(service: Service | None, tail: int = LOG_TAIL) -> LogEvidence:
    """The server's log lines since its last start, matched against the patterns.
    The process backend keeps stderr apart: its lines (FATAL CONFIG FILE ERROR, the
    built-in RDB check report) count only when written after the last logged start."""
    if service is None:
        return LogEvidence(error="no service to read logs from")
    try:
        if isinstance(service, ProcessService):
            log_lines = since_last_start(tail_lines(service.log_file, tail))
            out_lines = tail_lines(service.output_file, tail)
            started = next((t for t in map(line_time, log_lines[:1]) if t is not None), None)
            try:
                out_mtime: float | None = service.output_file.stat().st_mtime
            except OSError:
                out_mtime = None
            fresh = out_mtime is not None and (started is None or out_mtime >= started)
            out_lines = since_last_start(out_lines) if fresh else []
            matches = match_lines(log_lines, "log") + match_lines(out_lines, "stderr")
            return LogEvidence(
                sources=(str(service.log_file), str(service.output_file)),
                lines_read=len(log_lines) + len(out_lines),
                matches=tuple(matches),
            )
        lines = since_last_start(service.logs(tail))
        return LogEvidence(
            sources=(service.describe(),),
            lines_read=len(lines),
            matches=tuple(match_lines(lines, "logs")),
        )
    except RunbookError as exc:
        return LogEvidence(error=exc.message)


def _boot_seconds() -> float | None:
    try:
        return float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def parse_oom_kills(lines: list[str], now_since_boot: float | None) -> list[OomKill]:
    """Kernel OOM-killer lines about redis processes (`Out of memory: Killed process
    N (redis-server)`, `Memory cgroup out of memory: Killed process ...`)."""
    kills = []
    for line in lines:
        match = _KILLED.search(line)
        if not match or "redis" not in match.group("name"):
            continue
        stamp = _KERNEL_TS.match(line)
        age = None
        if stamp and now_since_boot is not None:
            age = max(0.0, now_since_boot - float(stamp.group("ts")))
        kills.append(OomKill(int(match.group("pid")), match.group("name"), line.strip(), age))
    return kills


def read_kernel_log(timeout: float = KERNEL_TIMEOUT_S) -> KernelEvidence:
    """OOM kills from `dmesg`, else `journalctl -k`. Never fails: when neither can be
    read (containers, no CAP_SYSLOG) it says so."""
    notes = []
    for argv in (
        ["dmesg"],
        ["journalctl", "-k", "-n", "2000", "--no-pager", "-o", "short-monotonic"],
    ):
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            notes.append(f"{argv[0]}: {getattr(exc, 'strerror', None) or type(exc).__name__}")
            continue
        text = done.stdout
        if done.returncode != 0 or "No journal files were found" in done.stderr + text:
            why = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
            notes.append(f"{argv[0]}: {why}")
            continue
        kills = parse_oom_kills(text.splitlines(), _boot_seconds())
        return KernelEvidence(readable=True, source=argv[0], kills=tuple(kills))
    return KernelEvidence(readable=False, note="kernel log not readable (" + "; ".join(notes) + ")")


def disk_evidence(path: Path) -> DiskEvidence:
    """Existence, writability, free bytes and inodes of the data dir (os.statvfs)."""
    if not path.is_dir():
        return DiskEvidence(path, exists=False)
    try:
        stats = os.statvfs(path)
    except OSError as exc:
        return DiskEvidence(path, exists=True, error=exc.strerror)
    return DiskEvidence(
        path,
        exists=True,
        writable=os.access(path, os.W_OK),
        free_bytes=stats.f_bavail * stats.f_frsize,
        total_bytes=stats.f_blocks * stats.f_frsize,
        free_inodes=stats.f_favail,
        total_inodes=stats.f_files,
    )


def _cpu_ticks(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def sample_cpu(pid: int, since: tuple[int, float] | None = None) -> CpuSample | None:
    """CPU % of `pid` from /proc: over the window since `since` (ticks, monotonic
    time) — the time the server spent not answering — topped up to CPU_SAMPLE_S."""
    if since is None:
        ticks = _cpu_ticks(pid)
        if ticks is None:
            return None
        since = (ticks, time.monotonic())
    before, started = since
    time.sleep(max(0.0, CPU_SAMPLE_S - (time.monotonic() - started)))
    after = _cpu_ticks(pid)
    if after is None:
        return None
    elapsed = time.monotonic() - started
    percent = (after - before) / os.sysconf("SC_CLK_TCK") / elapsed * 100
    return CpuSample(pid, proc_state(pid), round(percent, 1))


def _stale_pid(service: Service | None) -> int | None:
    """The pid a stopped process-backend server had (its pidfile survives kill -9)."""
    if not isinstance(service, ProcessService):
        return None
    try:
        return int(service.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _oom_growth(config: Config, env: Mapping[str, str] | None, snapshot: Snapshot) -> int | None:
    """errorstat_OOM now minus what the snapshot saw (a read-only INFO errorstats)."""
    client = make_client(config.target, env)
    try:
        now = error_counts(parse_info(str(client.execute_command("INFO", "errorstats"))))
    except (RunbookError, redis.RedisError):
        return None
    finally:
        client.close()
    return now.get("OOM", 0) - error_counts(snapshot.info).get("OOM", 0)


def collect(
    config: Config,
    env: Mapping[str, str] | None = None,
    *,
    service: Service | None = None,
    tool_timeout: float = 10.0,
) -> Evidence:
    """Gather the evidence. The snapshot (bounded by the connect timeout) runs while
    the service, logs, kernel log and disk are read; offline file checks run only
    for a server that is down."""
    target = config.target
    notes: list[str] = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        snapshot_future = pool.submit(take_snapshot, target, env)
        manager_timeout = target.connect_timeout + 3.0
        if service is None:
            try:
                service = make_service(config)
            except RunbookError as exc:
                notes.append(f"cannot control the service: {exc.message}")
        unknown = ServiceState(RunState.UNKNOWN, detail="the service manager did not answer")
        if service is not None:
            state, _ = bounded(service.state, manager_timeout, unknown)
        else:
            state = ServiceState(RunState.UNKNOWN, detail="no service configured")
        ticks = _cpu_ticks(state.pid) if state.pid else None
        cpu_since = (ticks, time.monotonic()) if ticks is not None else None
        logs, answered = bounded(lambda: read_logs(service), manager_timeout, LogEvidence())
        if not answered:
            logs = LogEvidence(error=f"reading the logs took more than {manager_timeout:g} s")
        kernel = read_kernel_log()
        snapshot = snapshot_future.result()
    layout = data_layout(config, snapshot.config, notes)
    evidence = Evidence(
        config=config,
        snapshot=snapshot,
        checks=evaluate(snapshot, config),
        service=service,
        state=state,
        logs=logs,
        kernel=kernel,
        disk=disk_evidence(layout.data_dir),
        layout=layout,
        stale_pid=_stale_pid(service),
        notes=notes,
    )
    if snapshot.reachable:
        evidence.oom_growth = _oom_growth(config, env, snapshot)
    if not snapshot.reachable and state.state is RunState.RUNNING and state.pid:
        evidence.cpu = sample_cpu(state.pid, cpu_since)
    if (
        isinstance(snapshot.error, TargetUnavailable)
        and "no answer in time" in snapshot.error.message
        and state.state is not RunState.HUNG
    ):
        evidence.stall = probe_stall(target, env)
    if evidence.down and service is not None and tool_timeout > 0:
        evidence.offline = offline_checks(service, layout, tool_timeout, config.categories)
        late = Backups(True, error=f"listing the archives took more than {BACKUPS_TIMEOUT_S:g} s")
        evidence.backups, _ = bounded(
            lambda: list_backups(config.backup, env), BACKUPS_TIMEOUT_S, late
        )
    return evidence
