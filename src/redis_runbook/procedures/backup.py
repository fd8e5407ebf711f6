"""`backup create` as a plan: BGSAVE (or join one in progress) and wait until it
succeeded, count the keys per database and category, then archive dump.rdb (checked
with redis-check-rdb on a hard link, the very bytes archived: recorded in the metadata
so that a restore need not check them again), the AOF
directory (manifest + files: a consistent copy taken with no AOF rewrite running and
checked with redis-check-aof, see backup.aofset), redis.conf (when configured) and
metadata.json."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from redis_runbook import __version__
from redis_runbook.aside import stamp
from redis_runbook.backup.aofset import SETTING as REWRITE_SETTING
from redis_runbook.backup.aofset import StagedAof, stage_aof
from redis_runbook.backup.base import Backend, BackupError
from redis_runbook.bgsave import SAVE_FAILED_HINT, SaveFailed, bgsave_and_wait, read_info
from redis_runbook.config import Config
from redis_runbook.inflight import Leftover
from redis_runbook.keyspace import count_keys
from redis_runbook.persistence.files import data_layout
from redis_runbook.persistence.layout import DataLayout
from redis_runbook.persistence.rdb import check_rdb_file, read_rdb_header
from redis_runbook.procedures.context import ProcedureContext
from redis_runbook.procedures.engine import Confirm, Plan, Step
from redis_runbook.replies import text
from redis_runbook.service.base import Launcher
from redis_runbook.target import redis_cli_prefix
from redis_runbook.units import format_bytes

METADATA_FORMAT = 1
CHECK_TIMEOUT_S = 600.0
RDB_LINK_PREFIX = ".redis-runbook-backup."


def config_get(client: redis.Redis, name: str) -> str:
    """One CONFIG GET value ("" when unknown), whether the reply is a map (RESP3)
    or a flat list of pairs (RESP2)."""
    reply: Any = client.execute_command("CONFIG", "GET", name)
    if not isinstance(reply, dict):
        reply = dict(zip(reply[::2], reply[1::2], strict=False))
    values = {text(k): text(v) for k, v in reply.items()}
    return values.get(name, "")


def archive_files(
    config: Config, layout: DataLayout, aof_files: Mapping[str, Path]
) -> dict[str, Path]:
    """Archive path -> host file: the RDB, the staged copy of the AOF (`aof_files`,
    see backup.aofset), and redis.conf when `[backup] include_conf` and it is set."""
    files: dict[str, Path] = {}
    if not layout.rdb_path.is_file():
        raise BackupError(f"no RDB at {layout.rdb_path} after BGSAVE", SAVE_FAILED_HINT)
    files[layout.dbfilename] = layout.rdb_path
    files.update(aof_files)
    conf = config.service.redis_conf
    if config.backup.include_conf and conf is not None and conf.is_file():
        files["redis.conf"] = conf
    return files


@dataclass
class CreateState:
    """What the steps of `backup create` hand to each other."""

    name: str
    redis_version: str = ""
    keys: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


def unique_name(pattern: str, taken: set[str]) -> str:
    """The archive name for now (`redis-20261126T103800Z`), suffixed when taken."""
    base = pattern.replace("{date}", stamp())
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


@dataclass
class CreateBackup:
    """The steps of `backup create` over what they share (`state`)."""

    pctx: ProcedureContext
    backend: Backend
    layout: DataLayout
    state: CreateState

    def save(self) -> str:
        """Step 1: BGSAVE (or join the one in progress) and wait for its success."""
        client = self.pctx.client()
        try:
            self.state.redis_version = read_info(client, "server").get("redis_version", "")
            try:
                return bgsave_and_wait(client, self.pctx.config.backup.bgsave_timeout_seconds)
            except SaveFailed as exc:
                raise BackupError(f"{exc.message}: no backup was made", exc.hint) from None
        finally:
            client.close()

    def count(self) -> str:
        """Step 2: keys per database and category, recorded in the metadata."""
        config = self.pctx.config
        self.state.keys = count_keys(config.target, config.categories)
        per = ", ".join(f"{k} {v}" for k, v in self.state.keys["by_category"].items() if v)
        return f"{self.state.keys['total']} keys ({per or 'none'})"

    def archive(self) -> str:
        """Step 3: the data files, redis.conf and metadata.json into one archive."""
        staging = Path(tempfile.mkdtemp(prefix="redis-runbook-backup-aof-"))
        try:
            return self._archive_from(staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _archive_from(self, staging: Path) -> str:
        config, layout, state = self.pctx.config, self.layout, self.state
        cli = redis_cli_prefix(config.target)
        hint = f"rewrite the AOF from memory: {cli} BGREWRITEAOF; then: redis-runbook backup create"
        client = self.pctx.client()
        try:
            timeout = config.backup.bgsave_timeout_seconds
            launcher = self.pctx.service.local_argv  # the service's own redis-check-aof
            aof = stage_aof(client, layout, staging, timeout, hint, cli, launcher)
            if aof.files:
                # A restore loads the AOF, a later point than the count: the writes
                # until its copy are how far the two can be apart.
                changes = int(read_info(client, "persistence")["rdb_changes_since_last_save"])
                state.keys["changes"] = max(int(state.keys.get("changes", 0)), changes)
        finally:
            client.close()
        files = archive_files(config, layout, aof.files)
        snapshot = self._snapshot_rdb()
        try:
            return self._archive_files(files, snapshot, launcher, aof)
        finally:
            if snapshot is not None:
                snapshot.unlink(missing_ok=True)

    @property
    def rdb_link(self) -> Path:
        """Where the archived RDB is hard-linked in the data dir while it is archived."""
        name = f"{RDB_LINK_PREFIX}{os.getpid()}.{self.layout.dbfilename}"
        return self.layout.data_dir / name

    def _snapshot_rdb(self) -> Path | None:
        """A hard link to the RDB, None where the filesystem or permissions refuse one.
        Redis never writes an RDB in place (it renames a new one over it), so the
        link's bytes stay those checked and archived, whatever BGSAVE runs meanwhile."""
        try:
            os.link(self.layout.rdb_path, self.rdb_link)
        except OSError:
            return None
        return self.rdb_link

    def _archive_files(
        self, files: dict[str, Path], snapshot: Path | None, launcher: Launcher, aof: StagedAof
    ) -> str:
        """Check the RDB's snapshot with redis-check-rdb (recorded in the metadata: a
        restore of exactly these bytes need not check them again), then archive."""
        layout, state = self.layout, self.state
        rdb_check: dict[str, Any] | None = None
        if snapshot is not None:
            check = check_rdb_file(launcher, snapshot, CHECK_TIMEOUT_S)
            if not check.ok:
                raise BackupError(
                    f"the {layout.dbfilename} BGSAVE just wrote fails redis-check-rdb: "
                    f"{check.summary}: no backup was made",
                    "redis-runbook diagnose",
                )
            files[layout.dbfilename] = snapshot
            rdb_check = {"ok": True, "summary": check.summary, "size": snapshot.stat().st_size}
        header = read_rdb_header(files[layout.dbfilename])
        state.metadata = {
            "format": METADATA_FORMAT,
            "tool": f"redis-runbook {__version__}",
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
            "target": self.pctx.where,
            "redis_version": state.redis_version,
            "rdb_version": header.version,
            "rdb_file": layout.dbfilename,
            "rdb_check": rdb_check,
            "size": sum(p.stat().st_size for p in files.values()),
            "files": sorted(files),
            "keys": state.keys,
        }
        made = self.backend.create(state.name, files, state.metadata)
        checked = f"; redis-check-aof: {aof.check.summary}" if aof.check else "; no AOF"
        if rdb_check is not None:
            checked = f"; redis-check-rdb: {rdb_check['summary']}{checked}"
        return (
            f"archive {made.name} in {self.backend.location}: {len(files)} files + "
            f"metadata.json, {format_bytes(state.metadata['size'])}, RDB version "
            f"{header.version}{checked}" + "".join(f"; {note}" for note in aof.notes)
        )


def plan_create(pctx: ProcedureContext, backend: Backend) -> Plan:
    """The plan of `backup create` (reads the archive list first: a wrong passphrase
    or a missing repository is reported before Redis is asked to save)."""
    config = pctx.config
    taken = {a.name for a in backend.list()}
    state = CreateState(unique_name(config.backup.archive_pattern, taken))
    notes: list[str] = []
    client = pctx.client()
    try:
        live = {"appendonly": config_get(client, "appendonly")}
        rewrite = config_get(client, REWRITE_SETTING)
    except redis.RedisError:
        live, rewrite = {}, ""
    finally:
        client.close()
    layout = data_layout(config, live, notes)
    cli = redis_cli_prefix(config.target)
    # A tool killed while it holds automatic AOF rewrites off leaves them off.
    resume = (
        f"if {cli} CONFIG GET {REWRITE_SETTING} says 0, put it back: {cli} CONFIG SET "
        f"{REWRITE_SETTING} {rewrite}; then: redis-runbook backup create"
        if rewrite and rewrite != "0"
        else ""
    )

    steps = CreateBackup(pctx, backend, layout, state)
    return Plan(
        procedure="backup create",
        target=pctx.where,
        confirm=Confirm.NONE,
        resume=resume,
        notes=[*notes, f"archive {state.name} -> {config.backup.kind} {backend.location}"],
        leftovers=[
            Leftover(
                str(steps.rdb_link),
                f"a hard link to {layout.dbfilename} (its bytes while archived)",
                f"safe to remove: rm {steps.rdb_link}",
            )
        ],
        steps=[
            Step("BGSAVE and wait until it succeeded", steps.save, on_failure=SAVE_FAILED_HINT),
            Step("Count keys per database and category (SCAN)", steps.count),
            Step(
                f"Archive {layout.dbfilename} (checked with redis-check-rdb), "
                f"{layout.appenddirname}/ (copied with no AOF rewrite running, checked with "
                f"redis-check-aof), redis.conf and metadata.json as {state.name}",
                steps.archive,
            ),
        ],
    )
