"""`recover restore --archive NAME|latest` (seed §4.3, done safely).

Planning does every check before anything live is touched: the archive exists and
extracts with its integrity verified (borg reads and authenticates every chunk),
into a staging dir next to the data dir (same filesystem, so the swap is a rename);
redis-check-rdb and redis-check-aof pass on the staged files; the RDB version is
one the installed redis-server can load. Then the steps: stop Redis, move the data
dir aside (never deleted), swap the staged data in with the configured owner, avoid
the appendonly trap (an RDB-only archive into an AOF server gets an AOF built on a
copy of its RDB), start, wait, compare keys per category with the archive's
metadata, and leave a provenance file next to the data.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from redis_runbook.aside import chown_tree, move_aside, stamp
from redis_runbook.backup.base import NOTHING_TO_RESTORE_HINT, Archive, Backend
from redis_runbook.backup.verify import compare_counts, compare_keyspace, drill_check_json
from redis_runbook.errors import Refused
from redis_runbook.inflight import Leftover, alive, process_start
from redis_runbook.keyspace import count_keys
from redis_runbook.locks import REDIS_LOCK_KEY, clear_foreign_lock
from redis_runbook.persistence.aof_check import parse_check_aof
from redis_runbook.persistence.files import data_layout
from redis_runbook.persistence.layout import DataLayout
from redis_runbook.persistence.rdb import (
    check_rdb_file,
    installed_redis_version,
    max_rdb_version_of,
    read_rdb_header,
    writers_of,
)
from redis_runbook.procedures.aof import write_aof_from_rdb
from redis_runbook.procedures.context import ProcedureContext
from redis_runbook.procedures.engine import Confirm, Plan, Step, StepFailed
from redis_runbook.procedures.followup import schedulers_follow_up
from redis_runbook.readiness import wait_started
from redis_runbook.replies import info_fields, keyspace, parse_info
from redis_runbook.service import RunState
from redis_runbook.service.base import Launcher, run_command
from redis_runbook.status import CheckResult, Status

PROVENANCE = ".redis-runbook-restore.json"
STAGING_PREFIX = ".redis-runbook-restore."
STAGING_OWNER = "owner.json"
READY_TIMEOUT_S = 600.0
TOOL_TIMEOUT_S = 600.0


@dataclass
class Staged:
    """The extracted archive and the data dir built from it, not yet live."""

    archive: Archive
    root: Path
    data: Path
    checks: list[str] = field(default_factory=list)
    aside: Path | None = None
    changes_at_start: int = 0


def _stage(ctx: ProcedureContext, backend: Backend, archive: Archive, layout: DataLayout) -> Staged:
    """Extract, check and lay out the archive next to the data dir (read-only for
    everything live). Refused, with the staging dir removed, when anything fails."""
    root = layout.data_dir.parent / f"{STAGING_PREFIX}{stamp()}"
    root.mkdir()
    owner = {"pid": os.getpid(), "process_start": process_start(os.getpid())}
    (root / STAGING_OWNER).write_text(json.dumps(owner))
    try:
        return _stage_into(ctx, backend, archive, layout, root)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)  # our own extraction, nothing else
        raise


def _stage_into(
    ctx: ProcedureContext, backend: Backend, archive: Archive, layout: DataLayout, root: Path
) -> Staged:
    extracted, data = root / "archive", root / "data"
    extracted.mkdir()
    data.mkdir()
    backend.extract(archive.name, extracted)  # BackupCorrupt / BackupError: refused below
    staged = Staged(archive, root, data, [f"{archive.name} extracted, integrity verified"])
    rdb = extracted / str(archive.metadata.get("rdb_file") or "dump.rdb")
    if not rdb.is_file():
        raise Refused(f"{archive.name} holds no {rdb.name}", "redis-runbook backup list")
    header = read_rdb_header(rdb)
    server = installed_redis_version(ctx.service) or ""
    newest = max_rdb_version_of(server)
    if header.version is not None and newest is not None and header.version > newest:
        raise Refused(
            f"{archive.name}: RDB version {header.version} ({writers_of(header.version)}) is "
            f"newer than redis-server {server} can load (RDB {newest} and older)",
            "restore onto a Redis at least as new as the one that wrote it, or pick an older "
            "archive: redis-runbook backup list",
        )
    launcher = ctx.service.local_argv  # the Redis that will load it checks it
    staged.checks.append(f"{rdb.name}: {_checked_rdb(archive, rdb, launcher)}; {header.summary}")
    shutil.move(rdb, data / layout.dbfilename)
    manifests = sorted(extracted.glob("*/*.manifest"))
    if manifests:
        aof_dir = data / layout.appenddirname
        shutil.move(manifests[0].parent, aof_dir)
        argv = launcher(["redis-check-aof", str(aof_dir / manifests[0].name)], [aof_dir])
        done = run_command(argv, timeout=TOOL_TIMEOUT_S)
        aof_check = parse_check_aof(done.stdout + done.stderr, done.returncode)
        if not aof_check.valid:
            raise Refused(f"{archive.name}: its AOF is not valid: {aof_check.summary}",
                          "pick another archive: redis-runbook backup list")  # fmt: skip
        staged.checks.append(f"AOF: {aof_check.summary}")
    elif layout.appendonly is not False:
        # The trap: with appendonly yes and no AOF, Redis would start empty.
        staged.checks.append(write_aof_from_rdb(_relocated(layout, data), launcher))
    return staged


def _checked_rdb(archive: Archive, rdb: Path, launcher: Launcher) -> str:
    """The RDB's verdict: the one `backup create` recorded when it checked exactly
    the archived bytes (the extract has just verified they are those bytes: borg
    authenticates every chunk, the directory backend its SHA-256 sums), else
    redis-check-rdb now. Refused when the RDB is damaged."""
    recorded = archive.metadata.get("rdb_check")
    if (
        isinstance(recorded, dict)
        and recorded.get("ok") is True
        and recorded.get("size") == rdb.stat().st_size
    ):
        return f"redis-check-rdb passed at backup create ({recorded.get('summary')})"
    check = check_rdb_file(launcher, rdb, TOOL_TIMEOUT_S)
    if not check.ok:
        raise Refused(f"{archive.name}: {rdb.name} is damaged: {check.summary}",
                      "pick another archive: redis-runbook backup list")  # fmt: skip
    return check.summary


def remove_stale_staging(parent: Path) -> list[str]:
    """Remove the staging dirs next to the data dir that an interrupted restore left
    (its process is gone; they hold only our extraction of an archive, which the
    repository still has); returns a note for each one removed or left."""
    notes = []
    for path in sorted(parent.glob(f"{STAGING_PREFIX}*")):
        if not path.is_dir():
            continue
        try:
            owner = json.loads((path / STAGING_OWNER).read_text())
            pid, started = int(owner["pid"]), owner.get("process_start")
        except (OSError, ValueError, KeyError, TypeError):
            notes.append(f"{path} was left by an earlier restore; remove it: rm -rf {path}")
            continue
        if alive(pid, started):
            continue  # another restore is staging right now (the lock refuses it)
        shutil.rmtree(path, ignore_errors=True)
        notes.append(f"removed {path}: the staging dir of a restore (pid {pid}) that was killed")
    return notes


def _relocated(layout: DataLayout, data_dir: Path) -> DataLayout:
    return DataLayout(**{**layout.__dict__, "data_dir": data_dir})


@dataclass
class Restore:
    """The restore's steps over what they share: the archive, the data layout, the
    staged extraction (and where the previous data went), whether to save, and
    whether to walk the keys per category even when the totals agree."""

    ctx: ProcedureContext
    archive: Archive
    layout: DataLayout
    staged: Staged
    save: bool
    verify_categories: bool = False

    def stop(self) -> str:
        """Stop Redis (saving first: the save lands in the copy moved aside)."""
        service = self.ctx.service
        if service.state().state is RunState.STOPPED:
            return "already stopped"
        service.stop(save=self.save)
        return "stopped" + (" after saving (kept in the aside copy)" if self.save else "")

    def swap(self) -> str:
        """Move the data dir aside, rename the staged archive into its place, give
        it to the server's user, remove what is left of our extraction."""
        uid, gid = self.ctx.service.owner
        data_dir, staged = self.layout.data_dir, self.staged
        staged.aside = move_aside(data_dir, "before-restore")
        staged.data.rename(data_dir)
        chown_tree(data_dir, uid, gid)
        shutil.rmtree(staged.root, ignore_errors=True)
        return (
            f"previous data moved to {staged.aside}; {self.archive.name} in place, "
            f"owned {uid}:{gid}"
        )

    def start(self) -> str:
        """Start, wait until loaded, remove a lock key the archive brought along, and
        note the writes counted so far (workers reconnecting: allowed for in verify)."""
        self.ctx.service.start()
        waited = wait_started(self.ctx.service, self.ctx.config.target, READY_TIMEOUT_S)
        message = f"answering with its data loaded after {waited:.1f} s"
        client = self.ctx.client()
        try:
            holder = clear_foreign_lock(client)
            persistence = parse_info(str(client.execute_command("INFO", "persistence")))
        finally:
            client.close()
        self.staged.changes_at_start = int(persistence.get("rdb_changes_since_last_save", 0))
        if holder is not None:
            message += f"; removed the archive's own {REDIS_LOCK_KEY} (held by {holder})"
        return message

    def verify(self) -> str:
        """The keys against the archive's metadata: keys and keys with a TTL over
        every database (INFO keyspace, O(1)). The keys are walked per category (SCAN,
        while Redis serves) only with --verify-categories, when the totals disagree
        (to say which category is short), or when the archive does not count its keys
        with a TTL. Then the provenance file."""
        config, staged, archive = self.ctx.config, self.staged, self.archive
        recorded = archive.metadata.get("keys", {})
        client = self.ctx.client()
        try:
            info = info_fields(client.execute_command("INFO", "keyspace", "persistence"))
        finally:
            client.close()
        dbs = keyspace(info)
        restored: dict[str, Any] = {
            "total": sum(d.keys for d in dbs),
            "expires": sum(d.expires for d in dbs),
            "changes": int(info.get("rdb_changes_since_last_save", 0)),
        }
        writes = restored["changes"] - staged.changes_at_start
        check = compare_keyspace(recorded, restored["total"], restored["expires"], writes)
        if check is None or check.status is Status.CRITICAL or self.verify_categories:
            # The walk counts no key of the tool's own (a probe or a lock in the
            # archive), which INFO keyspace does: its totals are judged again.
            restored = count_keys(config.target, config.categories)
            check = _judge_walk(recorded, restored, staged.changes_at_start)
        provenance: dict[str, Any] = {
            "archive": archive.name,
            "archive_time": archive.time.isoformat(),
            "restored_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "previous_data": str(staged.aside),
            "checks": staged.checks,
            "keys": restored,
            "verdict": drill_check_json(check),
        }
        written = self.layout.data_dir / PROVENANCE
        written.write_text(json.dumps(provenance, indent=2) + "\n")
        os.chown(written, *self.ctx.service.owner)  # the data dir holds only the server's files
        if check.status is Status.CRITICAL:
            raise StepFailed(f"key counts do not match the archive: {check.summary}")
        return f"{restored.get('total', 0)} keys; {check.summary}"

    def schedulers(self) -> str:
        """The expected job schedulers the restored data lacks (an archive older than
        their registration), named with what brings them back; never fails."""
        return schedulers_follow_up(self.ctx) or "no job schedulers expected"


def _judge_walk(
    recorded: dict[str, Any], restored: dict[str, Any], changes_at_start: int
) -> CheckResult:
    """The walk's keys per category against the archive's, and its totals too: the
    per-category rule gives each category the whole allowance of writes, the totals
    give it once."""
    writes = int(restored.get("changes", 0)) - changes_at_start
    by_category = compare_counts(recorded, restored, writes)
    volatile = sum(restored.get("volatile_by_category", {}).values())
    totals = compare_keyspace(recorded, int(restored.get("total", 0)), volatile, writes)
    if totals is None or Status.CRITICAL not in (totals.status, by_category.status):
        return by_category
    if by_category.status is Status.CRITICAL:
        return by_category  # it names the category
    return replace(totals, summary=f"{totals.summary}; per category: {by_category.summary}")


def plan_restore(
    ctx: ProcedureContext,
    backend: Backend,
    name: str,
    *,
    save: bool = True,
    force: bool = False,
    verify_categories: bool = False,
) -> Plan:
    """Check everything and build the plan. Its cleanup removes what is left of the
    staging dir (our own extraction) after a dry run, a refusal, or a failure
    before the swap."""
    service = ctx.service
    notes: list[str] = []
    layout = data_layout(ctx.config, {}, notes)
    if layout.appendonly is None:
        layout = DataLayout(**{**layout.__dict__, "appendonly": ctx.config.server.appendonly})
    if not layout.data_dir.is_dir():
        raise Refused(f"data dir {layout.data_dir} does not exist", "check [service] data_dir")
    archive = backend.find(name, NOTHING_TO_RESTORE_HINT)
    notes += remove_stale_staging(layout.data_dir.parent)
    state = service.state()
    if state.state is RunState.RUNNING and not force:
        raise Refused(
            f"Redis is running ({state.detail}): a restore replaces its data",
            f"stop it first, or let the restore stop it: redis-runbook recover restore "
            f"--archive {archive.name} --force",
        )
    staged = _stage(ctx, backend, archive, layout)
    restore = Restore(ctx, archive, layout, staged, save, verify_categories)
    notes += [
        f"service: {service.describe()} is {state.state.value} ({state.detail})",
        f"archive {archive.name} from {archive.time:%Y-%m-%d %H:%M} UTC: "
        + "; ".join(staged.checks),
        f"the current {layout.data_dir} is kept aside as {layout.data_dir.name}.<stamp>."
        "before-restore; every write after the archive's time is gone from the live server",
    ]
    return Plan(
        procedure="recover restore",
        target=ctx.where,
        confirm=Confirm.TYPED,
        confirm_word=archive.name,
        data_loss=True,
        notes=notes,
        leftovers=[
            Leftover(
                str(staged.root),
                f"the restore's own extraction of {archive.name}",
                f"safe to remove: rm -rf {staged.root}",
            )
        ],
        cleanup=lambda: shutil.rmtree(staged.root, ignore_errors=True),
        resume="redis-runbook diagnose; then put the data back as said above, or run "
        f"redis-runbook recover restore --archive {archive.name} --force again",
        steps=[
            Step("stop Redis" + (" (SHUTDOWN SAVE)" if save else " without saving"), restore.stop),
            Step(
                f"move {layout.data_dir} aside and swap the archive in",
                restore.swap,
                destructive=True,
            ),
            Step(
                "start Redis and wait until it has loaded the data",
                restore.start,
                on_failure="redis-runbook diagnose",
            ),
            Step(
                "verify the keys against the archive (INFO keyspace"
                + ("; per category, one SCAN walk" if verify_categories else "")
                + "); write the provenance",
                restore.verify,
            ),
            *(
                [Step("next: the expected BullMQ job schedulers", restore.schedulers)]
                if ctx.config.bullmq.expected_schedulers
                else []
            ),
        ],
    )
