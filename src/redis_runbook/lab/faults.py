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

from redis_runbook.fault_catalogue import FAULT_CATALOGUE
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


_INJECTIONS: dict[str, FaultFn] = {
    "kill": lambda s, o: live.kill(s),
    "hang": lambda s, o: live.hang(s),
    "aof-truncate": lambda s, o: files.aof_truncate(s),
    "aof-garbage-last": lambda s, o: files.aof_garbage_last(s),
    "aof-garbage-nonlast": lambda s, o: files.aof_garbage_nonlast(s),
    "manifest-corrupt": lambda s, o: files.manifest_corrupt(s),
    "manifest-missing-file": lambda s, o: files.manifest_missing_file(s),
    "rdb-crc": lambda s, o: files.rdb_crc(s),
    "rdb-truncate": lambda s, o: files.rdb_truncate(s),
    "rdb-newer": lambda s, o: files.rdb_newer(s),
    "config-error": lambda s, o: files.config_error(s),
    "disk-full": lambda s, o: live.disk_full(s, o.size_mb),
    "oom": lambda s, o: live.oom(s),
    "slow-script": lambda s, o: live.slow_script(s, o.seconds),
    "pause": lambda s, o: live.pause(s, o.seconds),
    "blocked-clients": lambda s, o: live.blocked_clients(s, o.count, o.seconds, o.holder_config),
}

FAULTS: dict[str, Fault] = {
    entry.name: Fault(entry.name, entry.help, entry.expect, _INJECTIONS[entry.name])
    for entry in FAULT_CATALOGUE
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
