"""The Scenario type (A down, B out of memory, C degraded, D corrupt), the commands
a scenario names as the next step, and the helpers every rule module uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from redis_runbook.diagnose.evidence import Evidence
from redis_runbook.persistence.rdb import max_rdb_version_of
from redis_runbook.status import CheckResult, Status
from redis_runbook.units import format_bytes

ScenarioCode = Literal["A", "B", "C", "D"]
SCENARIO_NAMES: dict[str, str] = {"A": "down", "B": "oom", "C": "degraded", "D": "corrupt"}
SEED_SECTIONS: dict[str, str] = {"A": "§3.1", "B": "§3.2", "C": "§3.3", "D": "§3.4"}

CMD_RESTART = "redis-runbook recover restart"
CMD_AOF = "redis-runbook recover aof"
CMD_RESTORE = "redis-runbook recover restore --archive latest"
CMD_EMERGENCY = "redis-runbook recover emergency-start"
CMD_OOM = "redis-runbook recover oom"
CMD_BLOCKED = "redis-runbook clients list --blocked"
CMD_CLIENTS = "redis-runbook clients list"
CMD_PERF = "redis-runbook perf report"
CMD_HEALTH = "redis-runbook health"
CMD_BACKUP_LIST = "redis-runbook backup list"

LOAD_FAILURES = (
    "aof-truncated-refused",
    "aof-bad-format",
    "aof-truncated-not-last",
    "aof-read-error",
    "aof-manifest",
    "aof-file-missing",
    "aof-rdb-base",
    "rdb-crc",
    "rdb-short-read",
    "rdb-signature",
    "rdb-version",
    "rdb-load-failed",
)
RESTORE = (
    f"restore the data dir from a backup; if no archive is usable, `{CMD_EMERGENCY}` "
    "starts Redis empty"
)
EMPTY_START = f"`{CMD_EMERGENCY}` starts Redis empty (the data dir is moved aside, nothing deleted)"
AOF_ADVICE: dict[str, str] = {
    "aof-nonlast": "redis-check-aof --fix only cuts the end of the last AOF file and an RDB "
    "base cannot be fixed at all: ",
    "aof-rdb-base": "the RDB base of the AOF cannot be fixed: ",
    "aof-missing-file": "a file the manifest names is gone (look for it elsewhere first), else ",
    "aof-manifest": "rebuild the manifest from the files in the AOF dir (`file <name> seq <n> "
    "type b|i|h`, BASE first, INCR files in order), or ",
    "aof-io-error": "the file cannot be read (a disk error? see dmesg): ",
}


@dataclass(frozen=True)
class Scenario:
    """One diagnosed scenario of seed §3 with its evidence and next command."""

    code: ScenarioCode
    cause: str
    summary: str
    evidence: tuple[str, ...]
    next_command: str
    advice: str | None = None
    files: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """down, oom, degraded or corrupt."""
        return SCENARIO_NAMES[self.code]

    @property
    def status(self) -> Status:
        """CRITICAL for A, B and D; WARNING for C."""
        return Status.WARNING if self.code == "C" else Status.CRITICAL


def restore_or_else(ev: Evidence) -> tuple[str, str]:
    """The next command when the data files cannot be used, and the advice that goes
    with it: a restore only of an archive a restore can load (listed while the server
    is down), else what works — `backup list` when the archives cannot be read, the
    emergency start when there is nothing to restore."""
    backups = ev.backups
    if backups is None:
        return CMD_RESTORE, RESTORE
    if not backups.configured:
        return (
            CMD_EMERGENCY,
            f"no [backup] repository is configured, nothing to restore: {EMPTY_START}",
        )
    if backups.error:
        return CMD_BACKUP_LIST, (
            f"the archives could not be listed ({backups.error}): `{CMD_BACKUP_LIST}` says why; "
            f"then `{CMD_RESTORE}`, or with no archive {EMPTY_START}"
        )
    version = ev.offline.server_version if ev.offline else None
    archive = backups.loadable(max_rdb_version_of(version) if version else None)
    if archive is None:
        why = (
            f"every archive in {backups.location} is newer than redis-server {version} can load"
            if backups.archives
            else f"there is no archive in {backups.location}"
        )
        return CMD_EMERGENCY, f"{why}: {EMPTY_START}"
    command = CMD_RESTORE
    if archive is not backups.latest:
        command = f"redis-runbook recover restore --archive {archive.name}"
    return command, (
        f"restore the data dir from archive {archive.name} ({archive.time:%Y-%m-%d %H:%M} UTC); "
        f"if that does not help, {EMPTY_START}"
    )


def find_check(ev: Evidence, name: str) -> CheckResult | None:
    return next((c for c in ev.checks if c.name == name), None)


def bad_check(ev: Evidence, name: str, at_least: Status = Status.WARNING) -> CheckResult | None:
    check = find_check(ev, name)
    if check is None or check.status is Status.UNKNOWN:
        return None
    return check if check.status.severity >= at_least.severity else None


def disk_line(ev: Evidence) -> str:
    disk = ev.disk
    if not disk.exists:
        return f"data dir {disk.path} does not exist"
    if disk.free_bytes is None:
        return f"data dir {disk.path}: free space unknown ({disk.error})"
    inodes = f", {disk.free_inodes} free inode(s)" if disk.total_inodes else ""
    writable = "" if disk.writable in (True, None) else ", NOT writable by this user"
    return (
        f"data dir {disk.path}: {format_bytes(disk.free_bytes)} free of "
        f"{format_bytes(disk.total_bytes or 0)}{inodes}{writable}"
    )


# --- D: damaged data files ----------------------------------------------------------------
