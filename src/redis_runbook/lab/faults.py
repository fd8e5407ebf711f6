"""Fault injection: every scenario of seed §3 caused for real on a real redis-server
(a lab dir or a test's RedisServer), and what `diagnose` is expected to say about it.

    injected = inject("aof-garbage-last", server)
    ...                                   # diagnose, recover
    injected.release()                    # ends faults that hold something

File faults kill the server with SIGKILL first and keep a copy of every file they
change under `<workdir>/fault-backups/<stamp>/`; see faults_files and faults_live.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from redis_runbook.lab import faults_files as files
from redis_runbook.lab import faults_live as live
from redis_runbook.lab.faults_base import Injected, UnknownFault
from redis_runbook.lab.server import RedisServer

__all__ = ["FAULTS", "Fault", "FaultOptions", "Injected", "UnknownFault", "inject"]


@dataclass(frozen=True)
class FaultOptions:
    """Knobs of the live faults: how long, how many, how big; `holder_config` (a
    redis-runbook.toml) makes blocked clients outlive the caller."""

    seconds: float = 30.0
    count: int = 150
    size_mb: int = 2
    holder_config: Path | None = None


FaultFn = Callable[[RedisServer, FaultOptions], Injected]


@dataclass(frozen=True)
class Fault:
    """A named fault, what it does, and the scenario `diagnose` should report."""

    name: str
    help: str
    expect: str
    run: FaultFn


def _fault(name: str, expect: str, run: FaultFn, help_text: str) -> Fault:
    return Fault(name, help_text, expect, run)


FAULTS: dict[str, Fault] = {
    f.name: f
    for f in (
        _fault("kill", "A crashed", lambda s, o: live.kill(s), "SIGKILL while a client writes"),
        _fault("hang", "A hung", lambda s, o: live.hang(s), "SIGSTOP (undo: lab break unhang)"),
        _fault(
            "aof-truncate",
            "D aof-truncated",
            lambda s, o: files.aof_truncate(s),
            "kill -9, cut the last AOF file mid-command; left down",
        ),
        _fault(
            "aof-garbage-last",
            "D aof-format",
            lambda s, o: files.aof_garbage_last(s),
            "kill -9, garbage in the middle of the last AOF file, start (fails)",
        ),
        _fault(
            "aof-garbage-nonlast",
            "D aof-nonlast",
            lambda s, o: files.aof_garbage_nonlast(s),
            "rewrite, kill -9, garbage in the BASE file (not the last), start (fails)",
        ),
        _fault(
            "manifest-corrupt",
            "D aof-manifest",
            lambda s, o: files.manifest_corrupt(s),
            "kill -9, garble the AOF manifest, start (fails)",
        ),
        _fault(
            "manifest-missing-file",
            "D aof-missing-file",
            lambda s, o: files.manifest_missing_file(s),
            "kill -9, move a file the manifest names away, start (fails)",
        ),
        _fault(
            "rdb-crc",
            "D rdb-crc",
            lambda s, o: files.rdb_crc(s),
            "SAVE, kill -9, appendonly no, flip a bit in dump.rdb, start (fails)",
        ),
        _fault(
            "rdb-truncate",
            "D rdb-truncated",
            lambda s, o: files.rdb_truncate(s),
            "SAVE, kill -9, appendonly no, cut dump.rdb to 60 %, start (fails)",
        ),
        _fault(
            "rdb-newer",
            "D rdb-too-new",
            lambda s, o: files.rdb_newer(s),
            "SAVE, kill -9, appendonly no, header REDIS0013, start (fails)",
        ),
        _fault(
            "config-error",
            "A config-error",
            lambda s, o: files.config_error(s),
            "stop, add a misspelt directive to redis.conf, start (fails)",
        ),
        _fault(
            "disk-full",
            "A disk-full",
            lambda s, o: live.disk_full(s, o.size_mb),
            "tmpfs over the data dir, filled until AOF writes fail (root; undo: lab break heal)",
        ),
        _fault(
            "oom",
            "B oom-rejections",
            lambda s, o: live.oom(s),
            "fill memory to maxmemory (noeviction) until a write gets OOM",
        ),
        _fault(
            "slow-script",
            "C busy-script",
            lambda s, o: live.slow_script(s, o.seconds),
            "a Lua busy loop for --seconds",
        ),
        _fault(
            "pause",
            "C paused",
            lambda s, o: live.pause(s, o.seconds),
            "CLIENT PAUSE for --seconds",
        ),
        _fault(
            "blocked-clients",
            "C blocked-clients",
            lambda s, o: live.blocked_clients(s, o.count, o.seconds, o.holder_config),
            "--count clients blocked in BLPOP for --seconds",
        ),
    )
}


def inject(name: str, server: RedisServer, options: FaultOptions | None = None) -> Injected:
    """Inject the fault called `name`. An unknown name raises UnknownFault listing the
    valid ones, before anything is touched."""
    fault = FAULTS.get(name)
    if fault is None:
        raise UnknownFault(
            f"unknown scenario {name!r}; valid: {', '.join(FAULTS)}",
            "redis-runbook lab break --help",
        )
    return fault.run(server, options or FaultOptions())
