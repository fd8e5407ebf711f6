"""A consistent copy of a live server's AOF for an archive, checked as `recover
restore` will check it.

A running Redis changes its AOF: an AOF rewrite (BGREWRITEAOF, or an automatic one
when the AOF grew by `auto-aof-rewrite-percentage`) writes a new BASE, a new
manifest, and deletes the old files; every write appends to the last INCR file.
So the copy is taken with no rewrite in progress or scheduled, with automatic
rewrites held off (`auto-aof-rewrite-percentage 0`, the previous value put back
afterwards, whatever happens), files first and the manifest last, and taken again
when a rewrite ran meanwhile all the same (someone's BGREWRITEAOF). Files that
only grow are copied (never linked) so that the copy is fixed; a command being
appended while the last INCR file was copied is trimmed from the copy (it came
after the copy's moment). Then `redis-check-aof` runs on the copy: an AOF that a
restore would refuse is not archived.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from redis_runbook import bgsave
from redis_runbook.backup.base import BackupError
from redis_runbook.bgsave import read_info
from redis_runbook.errors import RunbookError
from redis_runbook.persistence.aof import read_manifest
from redis_runbook.persistence.aof_check import AofCheck, parse_check_aof
from redis_runbook.persistence.layout import DataLayout
from redis_runbook.service.base import Launcher, on_host, run_command

POLL_S = 0.05
COPY_ATTEMPTS = 3
CHECK_TIMEOUT_S = 600.0
SETTING = "auto-aof-rewrite-percentage"


@dataclass
class StagedAof:
    """The AOF files to archive (archive path -> staged copy) and what was done."""

    files: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    check: AofCheck | None = None


def wait_no_rewrite(client: redis.Redis, timeout: float) -> float:
    """Poll until no AOF rewrite is in progress or scheduled; the seconds waited.
    BackupError at the deadline."""
    try:
        return bgsave.wait_no_rewrite(client, timeout)[0]
    except bgsave.RewriteTimeout as exc:
        raise BackupError(
            f"{exc.message}: no consistent copy",
            "raise [backup] bgsave_timeout_seconds, or run backup create again later",
        ) from None


def _hold(client: redis.Redis) -> str | None:
    """Set `auto-aof-rewrite-percentage 0`; the previous value, or None when CONFIG
    is refused (renamed, or an ACL user without it)."""
    try:
        reply = client.execute_command("CONFIG", "GET", SETTING)
        pairs = (
            reply if isinstance(reply, dict) else dict(zip(reply[::2], reply[1::2], strict=False))
        )
        previous = {str(k): str(v) for k, v in pairs.items()}.get(SETTING)
        if previous is None:
            return None
        client.execute_command("CONFIG", "SET", SETTING, "0")
    except redis.ResponseError:
        return None
    return previous


@contextlib.contextmanager
def rewrites_held_off(
    client: redis.Redis, timeout: float, notes: list[str] | None = None, cli: str = "redis-cli"
) -> Iterator[float]:
    """`auto-aof-rewrite-percentage 0` while the block runs (its value put back
    after, whatever happens), entered once no rewrite runs; yields the seconds
    waited for one to finish. When CONFIG is refused, a note says so (a rewrite
    during the copy is still noticed by the caller and the copy taken again)."""
    previous = _hold(client)
    if previous is None and notes is not None:
        notes.append(
            f"automatic AOF rewrites could not be held off (CONFIG GET/SET {SETTING} refused); "
            "a rewrite during the copy would make it be taken again"
        )
    try:
        yield wait_no_rewrite(client, timeout)
    finally:
        if previous is not None:
            try:
                client.execute_command("CONFIG", "SET", SETTING, previous)
            except redis.RedisError as exc:
                raise BackupError(
                    f"could not put {SETTING} back to {previous}: {exc}; automatic AOF "
                    "rewrites are off",
                    f"{cli} CONFIG SET {SETTING} {previous}",
                ) from None


def _stage_once(layout: DataLayout, staging: Path) -> dict[str, Path]:
    """Copy the AOF into `staging`: data files first (BASE and HISTORY linked when
    the filesystem allows, INCR copied), the manifest last."""
    source = layout.aof_dir
    target = staging / layout.appenddirname
    target.mkdir(parents=True)
    names = sorted(p.name for p in source.iterdir() if p.is_file())
    manifests = [n for n in names if n.endswith(".manifest")]
    files: dict[str, Path] = {}
    for name in [n for n in names if n not in manifests] + manifests:
        copied = target / name
        grows = name.endswith(".incr.aof") or name in manifests
        try:
            if grows:
                shutil.copy2(source / name, copied)
            else:
                try:
                    os.link(source / name, copied)
                except OSError:
                    shutil.copy2(source / name, copied)
        except FileNotFoundError:
            if name in manifests:
                raise
            continue  # a history file removed meanwhile: the rewrite check retries
        files[f"{layout.appenddirname}/{name}"] = copied
    return files


def _check(path: Path, launcher: Launcher) -> AofCheck:
    argv = launcher(["redis-check-aof", str(path)], [path.parent])
    done = run_command(argv, timeout=CHECK_TIMEOUT_S)
    return parse_check_aof(done.stdout + done.stderr, done.returncode)


def _trim_torn_tail(check: AofCheck, last: Path) -> str | None:
    """When the only problem is the last file ending mid-command (a write appended
    while it was copied), cut the copy there; a note, else None."""
    if check.problem != "truncated" or check.file != last.name or check.ok_up_to is None:
        return None
    with last.open("r+b") as handle:
        handle.truncate(check.ok_up_to)
    return (
        f"{last.name}: {check.diff} byte(s) of a command being written during the copy "
        "left out (they came after the copy's moment)"
    )


def check_staged(
    manifest: Path, last: Path | None, launcher: Launcher = on_host
) -> tuple[AofCheck, list[str]]:
    """redis-check-aof (the service's own, run by `launcher`) on the staged copy
    (after trimming a torn tail); BackupError when a restore would refuse it."""
    notes: list[str] = []
    check = _check(manifest, launcher)
    if not check.valid and last is not None:
        trimmed = _trim_torn_tail(check, last)
        if trimmed:
            notes.append(trimmed)
            check = _check(manifest, launcher)
    if not check.valid:
        raise BackupError(
            f"redis-check-aof on the copy to archive: {check.summary}; a restore would refuse "
            "this AOF, so no archive was made",
            "",
        )
    return check, notes


def stage_aof(
    client: redis.Redis,
    layout: DataLayout,
    staging: Path,
    timeout: float,
    cli_hint: str,
    cli: str = "redis-cli",
    launcher: Launcher = on_host,
) -> StagedAof:
    """A consistent, checked copy of the AOF in `staging` (see the module doc); no
    files when the server has no AOF. BackupError when no consistent copy could be
    taken or it fails the check."""
    if layout.aof_dir.is_dir():
        return _stage_multi_part(client, layout, staging, timeout, cli_hint, cli, launcher)
    if layout.single_aof_path.is_file():
        with rewrites_held_off(client, timeout, cli=cli):
            return _stage_single(layout, staging, cli_hint, launcher)
    return StagedAof()


def _stage_multi_part(
    client: redis.Redis,
    layout: DataLayout,
    staging: Path,
    timeout: float,
    cli_hint: str,
    cli: str,
    launcher: Launcher,
) -> StagedAof:
    staged = StagedAof()
    with rewrites_held_off(client, timeout, staged.notes, cli) as waited:
        if waited >= POLL_S:
            staged.notes.append(f"waited {waited:.1f} s for an AOF rewrite to finish")
        for attempt in range(COPY_ATTEMPTS):
            before = read_info(client, "persistence").get("aof_rewrites")
            shutil.rmtree(staging / layout.appenddirname, ignore_errors=True)
            try:
                staged.files = _stage_once(layout, staging)
            except OSError as exc:
                raise BackupError(
                    f"cannot copy {layout.aof_dir}: {exc.strerror}", "check free space in TMPDIR"
                ) from None
            after = read_info(client, "persistence")
            if after.get("aof_rewrites") == before and not bgsave.aof_rewriting(after):
                break
            if attempt == COPY_ATTEMPTS - 1:
                raise BackupError(
                    "an AOF rewrite ran during each of "
                    f"{COPY_ATTEMPTS} copies (a BGREWRITEAOF by someone?)",
                    "run backup create again once no rewrite runs",
                )
            wait_no_rewrite(client, timeout)
    manifests = sorted((staging / layout.appenddirname).glob("*.manifest"))
    if not manifests:
        raise BackupError(f"no AOF manifest in {layout.aof_dir}", "redis-runbook diagnose")
    manifest = manifests[0]
    try:
        loaded = read_manifest(manifest).loaded
    except RunbookError as exc:
        raise BackupError(f"the AOF manifest to archive: {exc.message}", cli_hint) from None
    missing = [e.name for e in loaded if not (manifest.parent / e.name).is_file()]
    if missing:
        raise BackupError(
            f"the AOF manifest names {', '.join(missing)}, not in {layout.aof_dir}", cli_hint
        )
    last = manifest.parent / loaded[-1].name if loaded else None
    try:
        staged.check, notes = check_staged(manifest, last, launcher)
    except BackupError as exc:
        raise BackupError(exc.message, cli_hint) from None
    staged.notes += notes
    return staged


def _stage_single(
    layout: DataLayout, staging: Path, cli_hint: str, launcher: Launcher
) -> StagedAof:
    """The old single-file AOF, copied and checked (a rewrite replaces it by a
    rename, so the copy is one file or the other, never a mix)."""
    copied = staging / layout.appendfilename
    shutil.copy2(layout.single_aof_path, copied)
    try:
        check, notes = check_staged(copied, copied, launcher)
    except BackupError as exc:
        raise BackupError(exc.message, cli_hint) from None
    return StagedAof({layout.appendfilename: copied}, notes, check)
