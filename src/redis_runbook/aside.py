"""Data files are never deleted: they are moved or copied aside to
`<name>.<UTC stamp>.<reason>` (DESIGN.md rule 1), after checking there is room.
Generations are kept: an existing aside name gets a `-2`, `-3`... suffix."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from redis_runbook.errors import Refused, RunbookError
from redis_runbook.inflight import Leftover

ROOM_MARGIN = 1.10  # copy only when 110 % of the size is free

# Told of every aside move or copy while a plan runs, so that an interrupted plan can
# say where the data is (the runner installs one; see inflight.py).
_observers: list[Callable[[Leftover], None]] = []


@contextlib.contextmanager
def observed(callback: Callable[[Leftover], None]) -> Iterator[None]:
    """Call `callback` with a Leftover for every move or copy aside in this block."""
    _observers.append(callback)
    try:
        yield
    finally:
        _observers.remove(callback)


def _left(leftover: Leftover) -> None:
    for callback in list(_observers):
        callback(leftover)


def stamp() -> str:
    """UTC timestamp for aside names: 20261126T103800Z."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def aside_path(path: Path, reason: str) -> Path:
    """A free sibling name `<name>.<stamp>.<reason>` for `path`."""
    base = path.with_name(f"{path.name}.{stamp()}.{reason}")
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def tree_size(path: Path) -> int:
    """Bytes used by a file or a directory tree (not following links)."""
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            total += (Path(root) / name).lstat().st_size
    return total


def free_bytes(path: Path) -> int:
    """Free bytes (for unprivileged users) on the filesystem holding `path`."""
    stat = os.statvfs(path if path.exists() else path.parent)
    return stat.f_bavail * stat.f_frsize


def move_aside(path: Path, reason: str) -> Path:
    """Rename `path` to its aside name in the same directory (atomic, needs no
    room); returns the new path."""
    target = aside_path(path, reason)
    try:
        path.rename(target)
    except OSError as exc:
        raise RunbookError(f"cannot move {path} aside to {target}: {exc.strerror}") from None
    _left(
        Leftover(
            str(target),
            f"{path}, moved aside",
            "to put it back: stop Redis; move "
            f"{path} out of the way if it exists; mv {target} {path}",
        )
    )
    return target


def copy_aside(path: Path, reason: str) -> Path:
    """Copy `path` (file or tree, metadata kept) to its aside name; refuses when the
    filesystem has less than 110 % of its size free. Returns the copy's path."""
    needed = int(tree_size(path) * ROOM_MARGIN)
    free = free_bytes(path.parent)
    if free < needed:
        raise Refused(
            f"not enough room to copy {path} aside: {needed} bytes needed, {free} free",
            f"free space on the filesystem of {path.parent}, or copy it elsewhere by hand",
        )
    target = aside_path(path, reason)
    try:
        if path.is_dir():
            shutil.copytree(path, target, symlinks=True)
        else:
            shutil.copy2(path, target)
        _copy_owners(path, target)
    except OSError as exc:
        raise RunbookError(f"cannot copy {path} to {target}: {exc.strerror}") from None
    undo = f"cp -a {target}/. {path}/" if path.is_dir() else f"cp -p {target} {path}"
    undo = f"to put it back: stop Redis; {undo}"
    _left(Leftover(str(target), f"a copy of {path} taken before changing it", undo))
    return target


def _copy_owners(source: Path, copy: Path) -> None:
    """Give every entry of `copy` the owner of its original in `source` (copy2 and
    copytree keep modes and times, not owners): a copy put back by hand must be
    writable by the server's user (999:999 in a container), not root's."""
    pairs = [(source, copy)]
    if source.is_dir() and not source.is_symlink():
        for root, dirs, files in os.walk(source):
            relative = Path(root).relative_to(source)
            pairs += [(Path(root) / n, copy / relative / n) for n in [*dirs, *files]]
    for original, copied in pairs:
        want, have = original.lstat(), copied.lstat()
        if (have.st_uid, have.st_gid) != (want.st_uid, want.st_gid):
            os.chown(copied, want.st_uid, want.st_gid, follow_symlinks=False)


def chown_tree(path: Path, uid: int, gid: int) -> None:
    """`chown -R uid:gid path` (symlinks themselves, never their targets)."""
    os.chown(path, uid, gid, follow_symlinks=False)
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            os.chown(Path(root) / name, uid, gid, follow_symlinks=False)


def writable_dir(path: Path) -> str | None:
    """None when `path` is an existing, writable directory; else why not."""
    if not path.exists():
        return f"{path} does not exist"
    if not path.is_dir():
        return f"{path} is not a directory"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"{path} is not writable"
    return None
