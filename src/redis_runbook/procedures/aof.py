"""`recover aof` (seed §4.2, §3.4): repair a damaged AOF, or fall back to the RDB.

Planning is read-only: it finds the AOF (Redis 7+ manifest + files, or the old
single file), runs `redis-check-aof` next to the data, and chooses one of:

- **valid**: nothing to repair, Redis is just started and verified;
- **repair**: the damage is in the last file Redis loads, the only one
  `redis-check-aof --fix` can cut. The whole AOF is copied aside first; the fix
  (its `Continue? [y/N]` answered) truncates from the first bad byte to the end;
  the cut bytes are read back from the copy to say which commands were lost.
  When the cut would drop complete commands and dump.rdb is sound, both ways out
  are first loaded on copies in throwaway servers (persistence.outcomes) and the
  one that loses less is planned — the cut or the RDB fallback — with a typed word;
- **RDB fallback**: damage the fix cannot reach (a non-last file, the RDB base, the
  manifest, a missing file) with a sound dump.rdb. The AOF is moved aside (never
  deleted) and a new AOF is built whose base is a copy of dump.rdb. This is how
  the trap is avoided that with `appendonly yes` and no AOF Redis starts *empty*
  and ignores dump.rdb — without restarting Redis with other settings, so it
  works the same under compose, systemd or a plain process;
- **refuse**: neither the AOF nor the RDB can be used: restore from a backup.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from redis_runbook.aside import chown_tree, copy_aside, move_aside
from redis_runbook.backup.available import list_backups
from redis_runbook.errors import Refused
from redis_runbook.persistence.aof import AofLayout
from redis_runbook.persistence.aof_check import check_aof, parse_check_aof
from redis_runbook.persistence.files import (
    OfflineEvidence,
    data_layout,
    in_service,
    offline_checks,
)
from redis_runbook.persistence.layout import DataLayout
from redis_runbook.persistence.rdb import max_rdb_version_of
from redis_runbook.persistence.resp import read_commands
from redis_runbook.procedures.context import ProcedureContext
from redis_runbook.procedures.engine import Confirm, Plan, Step, StepFailed
from redis_runbook.readiness import wait_started
from redis_runbook.service import RunState
from redis_runbook.service.base import Launcher, on_host
from redis_runbook.throwaway import aof_from_rdb

READY_TIMEOUT_S = 300.0
TOOL_TIMEOUT_S = 300.0
FALLBACK_WORD = "USE-RDB"
CUT_WORD = "CUT-AOF"
EMPTY_START_HINT = (
    "start empty (the data dir is moved aside, nothing deleted): "
    "redis-runbook recover emergency-start"
)


def beyond_repair_hint(ctx: ProcedureContext, server_version: str | None) -> str:
    """The next command when neither the AOF nor the RDB can be used: a restore only
    of an archive there is and the installed redis-server can load."""
    backups = list_backups(ctx.config.backup)
    if not backups.configured:
        return f"no [backup] repository is configured, nothing to restore: {EMPTY_START_HINT}"
    if backups.error:
        return f"the archives cannot be listed ({backups.error}): redis-runbook backup list"
    ceiling = max_rdb_version_of(server_version) if server_version else None
    archive = backups.loadable(ceiling)
    if archive is None:
        return f"no archive in {backups.location} a restore can load: {EMPTY_START_HINT}"
    which = "latest" if archive is backups.latest else archive.name
    return (
        f"restore archive {archive.name}: redis-runbook recover restore --archive {which}; "
        f"if that does not help, {EMPTY_START_HINT}"
    )


@dataclass
class AofState:
    """What planning found, and what the steps record as they go."""

    layout: DataLayout
    evidence: OfflineEvidence
    aside: Path | None = None
    lines: list[str] = field(default_factory=list)

    @property
    def aof(self) -> AofLayout:
        """The AOF on disk."""
        assert self.evidence.aof is not None
        return self.evidence.aof


def _start_steps(ctx: ProcedureContext, verify: Step) -> list[Step]:
    service = ctx.service

    def start() -> str:
        service.start()
        waited = wait_started(service, ctx.config.target, READY_TIMEOUT_S)
        return f"started; answering with its data loaded after {waited:.1f} s"

    return [
        Step(
            "start Redis and wait until it has loaded its data",
            start,
            on_failure="redis-runbook diagnose",
        ),
        verify,
    ]


def _dbsize(ctx: ProcedureContext) -> int:
    client = ctx.answering()
    if client is None:
        raise StepFailed(f"{ctx.where} does not answer PING")
    try:
        return int(str(client.dbsize()))
    finally:
        client.close()


def _repair_steps(ctx: ProcedureContext, state: AofState, keep_rdb: bool = False) -> list[Step]:
    check = state.evidence.aof_check
    assert check is not None
    assert check.file is not None
    assert check.ok_up_to is not None
    name, offset, diff = check.file, check.ok_up_to, check.diff
    aof = state.aof
    bad = aof.directory / name if aof.kind == "multi-part" else aof.files[0].path
    fix_path = in_service(ctx.service, state.layout, aof.check_path or bad)

    def copy() -> str:
        source = aof.directory if aof.kind == "multi-part" else bad
        state.aside = copy_aside(source, "before-fix")
        return f"copied {source} to {state.aside}"

    def fix() -> str:
        done = ctx.service.run_tool(
            ["redis-check-aof", "--fix", str(fix_path)], stdin="y\n", timeout=TOOL_TIMEOUT_S
        )
        result = parse_check_aof(done.stdout + done.stderr, done.returncode)
        if not result.valid:
            raise StepFailed(f"redis-check-aof --fix did not repair the AOF: {result.summary}")
        assert state.aside is not None
        copy_of_bad = state.aside / name if state.aside.is_dir() else state.aside
        with copy_of_bad.open("rb") as handle:
            handle.seek(offset)
            cut = read_commands(handle.read())
        state.lines.append(f"cut {diff} byte(s) from {name} at offset {offset}: {cut.summary}")
        return state.lines[-1]

    def recheck() -> str:
        again = check_aof(ctx.service, fix_path, TOOL_TIMEOUT_S)
        if not again.valid:
            raise StepFailed(f"the AOF is still not valid after the fix: {again.summary}")
        return again.summary

    def verify() -> str:
        keys = _dbsize(ctx)
        return f"PING ok, {keys} keys; lost: " + ("; ".join(state.lines) or "nothing")

    def copy_rdb() -> str:
        kept = copy_aside(state.layout.rdb_path, "before-fix")
        return f"copied {state.layout.rdb_path.name} to {kept} (the other way out, kept)"

    keep = [Step(f"copy {state.layout.rdb_path.name} aside (the next save replaces it)", copy_rdb)]
    return [
        Step("copy the AOF aside before fixing it", copy),
        *(keep if keep_rdb else []),
        Step(
            f"truncate {name} from offset {offset} (redis-check-aof --fix)",
            fix,
            destructive=True,
        ),
        Step("check the AOF again", recheck),
        *_start_steps(ctx, Step("verify PING and report what was lost", verify)),
    ]


def write_aof_from_rdb(
    layout: DataLayout, launcher: Launcher = on_host, timeout: float = TOOL_TIMEOUT_S
) -> str:
    """A new AOF holding what dump.rdb holds, owned like it. The multi-part AOF
    (Redis 7+) is written by the service's own Redis (`launcher`): a throwaway
    server loads a copy of the RDB and rewrites its AOF, so the manifest and files
    are in the format of the version that will read them. The old single-file
    layout is an AOF that is just the RDB preamble."""
    rdb = layout.rdb_path
    owner = rdb.stat()
    if layout.aof_dir.parent == layout.data_dir and not layout.single_aof_path.exists():
        work = Path(tempfile.mkdtemp(prefix=".redis-runbook-aof.", dir=layout.data_dir.parent))
        try:
            built = aof_from_rdb(rdb, work, layout.appenddirname, layout.appendfilename,
                                 timeout, launcher)  # fmt: skip
            built.rename(layout.aof_dir)  # same filesystem: the dir appears whole
        finally:
            shutil.rmtree(work, ignore_errors=True)
        chown_tree(layout.aof_dir, owner.st_uid, owner.st_gid)
        how = "Redis rewrote it from a copy of"
        return f"built {layout.aof_dir} ({how} {rdb.name} in a throwaway server)"
    shutil.copy2(rdb, layout.single_aof_path)
    os.chown(layout.single_aof_path, owner.st_uid, owner.st_gid)
    return f"built {layout.single_aof_path} from a copy of {rdb.name}"


def _fallback_steps(ctx: ProcedureContext, state: AofState) -> list[Step]:
    layout = state.layout
    aof = state.aof
    rdb_check = state.evidence.rdb_check
    expected = rdb_check.keys_read if rdb_check else None
    saved = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(layout.rdb_path.stat().st_mtime))

    def move() -> str:
        source = aof.directory if aof.kind in ("multi-part", "orphaned") else aof.files[0].path
        state.aside = move_aside(source, "corrupt")
        return f"moved {source} to {state.aside}"

    def verify() -> str:
        keys = _dbsize(ctx)
        if expected and keys == 0:
            raise StepFailed(
                f"Redis started empty although {layout.rdb_path.name} holds {expected} keys"
            )
        return (
            f"PING ok, {keys} keys loaded from {layout.rdb_path.name} (saved {saved}); every "
            f"write after that save is lost from the live server and kept in {state.aside}"
        )

    steps = [Step("move the damaged AOF aside", move, destructive=True)]
    if layout.appendonly is not False:
        steps.append(
            Step(
                f"build a new AOF from {layout.rdb_path.name}",
                lambda: write_aof_from_rdb(layout, ctx.service.local_argv),
            )
        )
    return steps + _start_steps(ctx, Step("verify PING and the keys loaded", verify))


def _valid_steps(ctx: ProcedureContext) -> list[Step]:
    return _start_steps(
        ctx, Step("verify PING", lambda: f"PING ok, {_dbsize(ctx)} keys; nothing was repaired")
    )


def _usable_rdb(state: AofState) -> str | None:
    """None when dump.rdb can replace the AOF; else why not."""
    evidence = state.evidence
    if not state.layout.rdb_path.is_file():
        return f"there is no {state.layout.rdb_path.name}"
    if evidence.rdb_check is None or not evidence.rdb_check.ok:
        detail = evidence.rdb_check.summary if evidence.rdb_check else evidence.rdb_error
        return f"{state.layout.rdb_path.name} is not sound: {detail}"
    return None


def _cut_or_rdb(
    ctx: ProcedureContext, state: AofState, notes: list[str]
) -> tuple[list[Step], Confirm, str]:
    """The damage is in the last file. When the cut drops complete commands: the
    comparison of both ways out (measured while planning) picks the one that loses
    less, and either needs the typed word."""
    cut, comparison = state.evidence.cut, state.evidence.comparison
    if cut is None or not cut.complete:
        return _repair_steps(ctx, state), Confirm.YES_NO, "yes"
    if comparison is None:
        unusable = _usable_rdb(state) or "it could not be compared"
        notes.append(f"--fix would cut {cut.summary}; no other way out: {unusable}")
        return _repair_steps(ctx, state), Confirm.TYPED, CUT_WORD
    notes.extend(comparison.lines())
    if comparison.chosen == "rdb":
        notes.append(
            f"falling back to {state.layout.rdb_path.name}: the AOF is moved aside, not cut"
        )
        return _fallback_steps(ctx, state), Confirm.TYPED, FALLBACK_WORD
    keep_rdb = state.layout.rdb_path.is_file()
    return _repair_steps(ctx, state, keep_rdb), Confirm.TYPED, CUT_WORD


def plan_aof(ctx: ProcedureContext, force: bool = False) -> Plan:
    """Check the AOF (read-only) and build the plan that fits what is wrong."""
    service = ctx.service
    status = service.state()
    if status.state is not RunState.STOPPED and not force:
        raise Refused(
            f"recover aof works on a stopped Redis, and it is {status.state.value} "
            f"({status.detail})",
            "redis-runbook diagnose; to stop it first (SHUTDOWN SAVE): redis-runbook recover aof "
            "--force",
        )
    notes = [f"service: {service.describe()} is {status.state.value} ({status.detail})"]
    layout = data_layout(ctx.config, {}, notes)
    if layout.appendonly is None:
        layout = DataLayout(**{**layout.__dict__, "appendonly": ctx.config.server.appendonly})
    evidence = offline_checks(service, layout, TOOL_TIMEOUT_S, ctx.config.categories)
    if evidence.aof_error:
        missing_tool = "not installed" in evidence.aof_error
        raise Refused(
            f"cannot check the AOF: {evidence.aof_error}",
            "install it where Redis runs (Debian: apt-get install redis-tools), then run "
            "redis-runbook recover aof again"
            if missing_tool
            else "redis-runbook diagnose",
        )
    state = AofState(layout, evidence)
    aof, check = state.aof, evidence.aof_check
    pre: list[Step] = []
    if status.state is not RunState.STOPPED:
        pre.append(
            Step("stop Redis with SHUTDOWN SAVE", lambda: (service.stop(save=True), "stopped")[1])
        )
    if aof.kind == "none":
        raise Refused(f"no AOF in {layout.data_dir}", "redis-runbook diagnose")
    if check is not None and check.valid:
        notes.append(f"{check.summary}: nothing to repair")
        steps, confirm, word = _valid_steps(ctx), Confirm.YES_NO, "yes"
    elif (
        check is not None
        and check.problem in ("truncated", "format")
        and check.file is not None
        and check.ok_up_to is not None
        and aof.is_last(check.file)
    ):
        notes.append(check.summary)
        steps, confirm, word = _cut_or_rdb(ctx, state, notes)
    else:
        why = check.summary if check else f"the AOF dir has no manifest ({aof.kind})"
        unusable = _usable_rdb(state)
        if unusable:
            raise Refused(
                f"the AOF is beyond repair ({why}) and {unusable}",
                beyond_repair_hint(ctx, evidence.server_version),
            )
        notes.append(f"beyond repair by redis-check-aof --fix: {why}")
        notes.append(
            f"falling back to {layout.rdb_path.name}: writes after its save are lost "
            "from the live server (the AOF is kept aside)"
        )
        steps, confirm, word = _fallback_steps(ctx, state), Confirm.TYPED, FALLBACK_WORD
    return Plan(
        procedure="recover aof",
        target=ctx.where,
        steps=pre + steps,
        confirm=confirm,
        confirm_word=word,
        data_loss=confirm is Confirm.TYPED,
        notes=notes,
    )
