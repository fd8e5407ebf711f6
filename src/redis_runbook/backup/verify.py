"""`backup verify`: the restore drill (seed §6.4 monthly restore test). Extract an
archive into a temporary directory, `redis-check-rdb` its RDB, refuse an RDB newer
than the installed redis-server, `redis-check-aof` the archive's AOF when it has
one, load into a throwaway redis-server (loopback, free port) exactly what `recover
restore` would load — the AOF (with its RDB base) when the archive has one, else the
RDB — compare the keys per category with the archive's metadata and
judge its age against the RPO. The live server is never touched; the throwaway
server is stopped and every temporary file removed, whatever happens."""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from redis_runbook.backup.base import Archive, Backend, BackupCorrupt
from redis_runbook.config import Category
from redis_runbook.errors import RunbookError
from redis_runbook.keyspace import count_keys
from redis_runbook.persistence.aof_check import parse_check_aof
from redis_runbook.persistence.rdb import (
    check_rdb_file,
    max_rdb_version_of,
    read_rdb_header,
    writers_of,
)
from redis_runbook.service.base import Launcher, on_host, run_command
from redis_runbook.status import CheckResult, Status, worst
from redis_runbook.throwaway import ThrowawayServer

#: The drill's words for a check's status in its JSON and its report (an UNKNOWN is
#: never produced: a check the drill cannot make fails).
DRILL_WORDS = {Status.OK: "ok", Status.WARNING: "warning", Status.CRITICAL: "failed",
               Status.UNKNOWN: "failed"}  # fmt: skip
#: Keys may differ between the count and the snapshot on a busy server, and keys
#: with a TTL expire before the drill loads them: tolerate that many plus 1 %.
COUNT_TOLERANCE_PCT = 1.0
DRILL_SETTINGS = {"appendonly": "no", "save": "", "maxmemory": "0"}
MANIFEST_SUFFIX = ".manifest"


def drill_check_json(check: CheckResult) -> dict[str, str]:
    """One drill check as JSON (docs/json.md): name, status word, detail."""
    return {"name": check.name, "status": DRILL_WORDS[check.status], "detail": check.summary}


@dataclass
class DrillReport:
    """What the drill found about one archive."""

    archive: Archive
    rpo_hours: float
    checks: list[CheckResult] = field(default_factory=list)
    restored: dict[str, Any] = field(default_factory=dict)
    server_version: str | None = None

    @property
    def status(self) -> Status:
        """The worst status of the checks."""
        return worst(c.status for c in self.checks)

    @property
    def exit_code(self) -> int:
        """0 ok, 1 warning (old archive), 2 failed."""
        return int(self.status)

    @property
    def reason(self) -> str | None:
        """The first failed (else warning) check's detail."""
        for wanted in (Status.CRITICAL, Status.WARNING):
            for check in self.checks:
                if check.status is wanted:
                    return f"{check.name}: {check.summary}"
        return None

    def add(self, name: str, status: Status, detail: str) -> None:
        """Record a verdict."""
        self.checks.append(CheckResult(name, status, summary=detail))

    def to_json(self) -> dict[str, Any]:
        """The report as JSON (docs/json.md, `backup verify`)."""
        return {
            "archive": self.archive.to_json(),
            "status": DRILL_WORDS[self.status],
            "exit_code": self.exit_code,
            "reason": self.reason,
            "age_hours": round(self.archive.age_hours(), 2),
            "rpo_hours": self.rpo_hours,
            "server_version": self.server_version,
            "recorded_keys": self.archive.metadata.get("keys", {}).get("by_category"),
            "restored_keys": self.restored.get("by_category"),
            "checks": [drill_check_json(c) for c in self.checks],
        }


def installed_server_version(launcher: Launcher = on_host) -> str | None:
    """`redis-server --version` (`v=7.0.15`) of the Redis that restores would load
    into (the service's own), None when unknown."""
    done = run_command(launcher(["redis-server", "--version"], []), timeout=60)
    for word in done.stdout.split():
        if word.startswith("v="):
            return word[2:]
    return None


def compare_counts(
    recorded: Mapping[str, Any], restored: Mapping[str, Any], writes_since_load: int = 0
) -> CheckResult:
    """Keys per category in the restored server against the metadata. Per category:
    keys without a TTL must match exactly, give or take the writes the server took
    while the archive was counted (`changes` in the metadata) and since the restored
    server loaded it; keys with a TTL may have expired, never multiplied."""
    if "volatile_by_category" not in recorded or "volatile_by_category" not in restored:
        return _compare_totals(recorded, restored)  # an archive from before 0.2
    before: Mapping[str, int] = recorded.get("by_category") or {}
    after: Mapping[str, int] = restored.get("by_category") or {}
    v_before: Mapping[str, int] = recorded["volatile_by_category"]
    v_after: Mapping[str, int] = restored["volatile_by_category"]
    writes = int(recorded.get("changes", 0)) + max(writes_since_load, 0)
    names = sorted(set(before) | set(after))
    shown = ", ".join(f"{n} {after.get(n, 0)}/{before.get(n, 0)}" for n in names if before.get(n))
    wrong = []
    for name in names:
        durable_before = before.get(name, 0) - v_before.get(name, 0)
        durable_after = after.get(name, 0) - v_after.get(name, 0)
        if abs(durable_after - durable_before) > writes:
            wrong.append(
                f"{name}: {durable_after} keys without a TTL, {durable_before} in the archive"
            )
        if v_after.get(name, 0) > v_before.get(name, 0) + writes:
            wrong.append(
                f"{name}: {v_after.get(name, 0)} keys with a TTL, {v_before.get(name, 0)} "
                "in the archive"
            )
    allowance = f"{writes} writes while counting" if writes else "no writes while counting"
    if wrong:
        return CheckResult(
            "keys",
            Status.CRITICAL,
            summary=f"keys do not match the archive ({allowance}): " + "; ".join(wrong),
        )
    total_before, total_after = sum(before.values()), sum(after.values())
    detail = f"{total_after}/{total_before} keys restored ({shown or 'no keys'})"
    expired = sum(max(v_before.get(n, 0) - v_after.get(n, 0), 0) for n in names)
    detail += f"; keys without a TTL match per category ({allowance})"
    if expired:
        detail += f"; {expired} keys with a TTL expired since"
    return CheckResult("keys", Status.OK, summary=detail)


def compare_keyspace(
    recorded: Mapping[str, Any], keys: int, expires: int, writes_since_load: int = 0
) -> CheckResult | None:
    """The O(1) judgement of a restore: keys and keys with a TTL over every database
    (INFO keyspace) against the archive's totals. Keys without a TTL must all be
    there, give or take the writes counted as in `compare_counts`; keys with a TTL may
    have expired, never multiplied. None when the metadata does not count the keys
    with a TTL (an archive from before 0.2): then only a walk can judge."""
    volatile_by_category = recorded.get("volatile_by_category")
    if not isinstance(volatile_by_category, Mapping) or "total" not in recorded:
        return None
    volatile_before = sum(int(n) for n in volatile_by_category.values())
    total = int(recorded["total"])
    durable_before, durable_after = total - volatile_before, keys - expires
    writes = int(recorded.get("changes", 0)) + max(writes_since_load, 0)
    allowance = f"{writes} writes while counting" if writes else "no writes while counting"
    wrong = []
    if abs(durable_after - durable_before) > writes:
        wrong.append(f"{durable_after} keys without a TTL, {durable_before} in the archive")
    if expires > volatile_before + writes:
        wrong.append(f"{expires} keys with a TTL, {volatile_before} in the archive")
    if wrong:
        return CheckResult(
            "keys",
            Status.CRITICAL,
            summary=f"keys do not match the archive ({allowance}): " + "; ".join(wrong),
        )
    detail = f"{keys}/{total} keys restored; keys without a TTL match ({allowance})"
    if volatile_before > expires:
        detail += f"; {volatile_before - expires} keys with a TTL expired since"
    return CheckResult("keys", Status.OK, summary=detail)


def _compare_totals(recorded: Mapping[str, Any], restored: Mapping[str, Any]) -> CheckResult:
    """The judgement for archives whose metadata has no TTL counts per category:
    the drift over all categories within the keys with a TTL plus 1 %."""
    before: Mapping[str, int] = recorded.get("by_category") or {}
    after: Mapping[str, int] = restored.get("by_category") or {}
    total_before = int(recorded.get("total", sum(before.values())))
    total_after = int(restored.get("total", sum(after.values())))
    names = sorted(set(before) | set(after))
    diffs = {n: after.get(n, 0) - before.get(n, 0) for n in names}
    shown = ", ".join(f"{n} {after.get(n, 0)}/{before.get(n, 0)}" for n in names if before.get(n))
    tolerance = int(recorded.get("expires", 0)) + math.ceil(
        total_before * COUNT_TOLERANCE_PCT / 100
    )
    if total_before and not total_after:
        return CheckResult(
            "keys", Status.CRITICAL, summary=f"the RDB loaded no keys; {total_before} recorded"
        )
    drift = sum(abs(d) for d in diffs.values())
    if drift > tolerance:
        return CheckResult(
            "keys",
            Status.CRITICAL,
            summary=f"restored/recorded per category differ by {drift} keys "
            f"(tolerance {tolerance}): {shown}",
        )
    detail = f"{total_after}/{total_before} keys restored ({shown or 'no keys'})"
    if drift:
        detail += f"; {drift} differ, within tolerance {tolerance} (TTLs, writes during BGSAVE)"
    return CheckResult("keys", Status.OK, summary=detail)


def drill(
    backend: Backend,
    name: str,
    categories: Sequence[Category],
    rpo_hours: float,
    timeout: float = 60.0,
    launcher: Launcher = on_host,
) -> DrillReport:
    """Run the restore drill on archive `name` (or `latest`) with the Redis programs
    `launcher` runs (the service's own: a compose service's image). UnknownName when
    it does not exist; every other problem is a failed check in the report."""
    archive = backend.find(name)
    report = DrillReport(archive=archive, rpo_hours=rpo_hours)
    workdir = Path(tempfile.mkdtemp(prefix="redis-runbook-drill-"))
    try:
        _drill(backend, report, workdir, categories, timeout, launcher)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    age = archive.age_hours()
    if age > rpo_hours:
        report.add(
            "age", Status.WARNING, f"{age:.1f} h old, past the RPO of {rpo_hours:g} h: back up now"
        )
    else:
        report.add("age", Status.OK, f"{age:.1f} h old (RPO {rpo_hours:g} h)")
    return report


def _drill(
    backend: Backend,
    report: DrillReport,
    workdir: Path,
    categories: Sequence[Category],
    timeout: float,
    launcher: Launcher,
) -> None:
    archive = report.archive
    staging = workdir / "archive"
    staging.mkdir()
    try:
        backend.extract(archive.name, staging)
    except BackupCorrupt as exc:
        report.add("extract", Status.CRITICAL, exc.message)
        return
    files = sum(1 for p in staging.rglob("*") if p.is_file())
    report.add("extract", Status.OK, f"{files} files extracted, integrity verified")
    rdb = staging / str(archive.metadata.get("rdb_file") or "dump.rdb")
    if not rdb.is_file():
        report.add("rdb", Status.CRITICAL, f"no {rdb.name} in the archive")
        return
    header = read_rdb_header(rdb)
    check = check_rdb_file(launcher, rdb, timeout)
    if not check.ok:
        report.add("redis-check-rdb", Status.CRITICAL, check.summary)
        return
    report.add("redis-check-rdb", Status.OK, f"{check.summary}; {header.summary}")
    report.server_version = installed_server_version(launcher)
    newest = max_rdb_version_of(report.server_version or "")
    if header.version is not None and newest is not None and header.version > newest:
        report.add(
            "rdb-version",
            Status.CRITICAL,
            f"RDB version {header.version} ({writers_of(header.version)}) is newer than the "
            f"installed redis-server {report.server_version} can load (up to {newest})",
        )
        return
    report.add(
        "rdb-version", Status.OK, f"RDB {header.version} loads on Redis {report.server_version}"
    )
    manifests = sorted(staging.glob(f"*/*{MANIFEST_SUFFIX}"))
    if manifests:  # `recover restore` loads this AOF: drill it, not the RDB alone
        done = run_command(
            launcher(["redis-check-aof", str(manifests[0])], [workdir]), timeout=timeout
        )
        aof_check = parse_check_aof(done.stdout + done.stderr, done.returncode)
        if not aof_check.valid:
            report.add(
                "redis-check-aof",
                Status.CRITICAL,
                f"a restore would refuse it: {aof_check.summary}",
            )
            return
        report.add("redis-check-aof", Status.OK, aof_check.summary)
    manifest = manifests[0] if manifests else None
    _load(report, workdir, rdb, manifest, categories, timeout, launcher)


def _load(
    report: DrillReport,
    workdir: Path,
    rdb: Path,
    manifest: Path | None,
    categories: Sequence[Category],
    timeout: float,
    launcher: Launcher,
) -> None:
    """Load what a restore loads into a throwaway server: with an AOF, the AOF dir
    and the RDB with `appendonly yes` (Redis then loads the AOF), else the RDB."""
    settings = dict(DRILL_SETTINGS)
    server = ThrowawayServer(workdir / "server", settings, launcher=launcher)
    shutil.move(rdb, server.data_dir / rdb.name)
    settings["dbfilename"] = rdb.name
    what = f"{rdb.name} (AOF off: the archive has no AOF)"
    if manifest is not None:
        shutil.move(manifest.parent, server.data_dir / manifest.parent.name)
        settings.update(
            appendonly="yes",
            appenddirname=manifest.parent.name,
            appendfilename=manifest.name.removesuffix(MANIFEST_SUFFIX),
        )
        what = f"the AOF ({manifest.parent.name}/, AOF on) as a restore loads it"
    server.settings.update(settings)
    with server:
        try:
            server.start(timeout)
            report.restored = count_keys(server.target(), categories)
        except (RunbookError, redis.RedisError) as exc:
            report.add("load", Status.CRITICAL, getattr(exc, "message", str(exc)))
            return
        report.add(
            "load", Status.OK, f"loaded {what} into a throwaway redis-server on port {server.port}"
        )
    report.checks.append(compare_counts(report.archive.metadata.get("keys", {}), report.restored))
