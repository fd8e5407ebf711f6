"""Before an AOF is cut: what would each way out keep?

When `redis-check-aof --fix` would cut complete commands from the last AOF file and
dump.rdb is sound, there are two ways to start: the cut AOF, or the RDB. Both are
a prefix of the same history, so the one that reaches further loses less. This
module measures both for real — a copy of the AOF cut where the fix would cut it,
and a copy of dump.rdb, each loaded into a throwaway redis-server — and compares
keys per category and the newest write each holds (the newest stream entry:
BullMQ writes one on every job change). Read-only for the data dir: only copies,
in a temporary directory that is removed afterwards.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from redis_runbook.aside import tree_size
from redis_runbook.config import Category
from redis_runbook.errors import RunbookError
from redis_runbook.persistence.aof import AofLayout
from redis_runbook.persistence.aof_check import AofCheck
from redis_runbook.persistence.layout import DataLayout
from redis_runbook.persistence.resp import CutCommands, read_commands
from redis_runbook.service.base import Launcher, on_host
from redis_runbook.throwaway import Loaded, ensure_room, load_and_count

Choice = Literal["aof", "rdb"]
ROOM_MARGIN = 1.10
MIN_TIMEOUT_S = 60.0


def damaged_last_file(aof: AofLayout | None, check: AofCheck | None) -> Path | None:
    """The last AOF file when it is the one damaged (the only case `--fix` can
    cut), else None."""
    if aof is None or check is None or check.valid:
        return None
    if check.problem not in ("truncated", "format") or check.file is None:
        return None
    if check.ok_up_to is None or not aof.is_last(check.file):
        return None
    return aof.directory / check.file if aof.kind == "multi-part" else aof.files[0].path


def what_the_cut_drops(aof: AofLayout | None, check: AofCheck | None) -> CutCommands | None:
    """The commands `--fix` would cut (read from the file as it is), or None when
    the damage is not in the last file."""
    path = damaged_last_file(aof, check)
    if path is None or check is None or check.ok_up_to is None:
        return None
    try:
        with path.open("rb") as handle:
            handle.seek(check.ok_up_to)
            return read_commands(handle.read())
    except OSError:
        return None


def when(ms: int | None) -> str:
    """`2026-12-03 19:49:28.123 UTC`, or `none found` for no stream entry at all."""
    if ms is None:
        return "none found (no stream)"
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + f".{millis:03d} UTC"


@dataclass
class Outcome:
    """What one way out keeps (or why it could not be measured)."""

    choice: Choice
    label: str
    loaded: Loaded | None = None
    error: str | None = None

    def count(self, category: str) -> int:
        """Keys of `category` it keeps."""
        assert self.loaded is not None
        return int(self.loaded.keys.get("by_category", {}).get(category, 0))

    @property
    def total(self) -> int:
        """Keys it keeps."""
        return int(self.loaded.keys.get("total", 0)) if self.loaded else 0

    def line(self) -> str:
        """`if the AOF is cut at ...: 665 keys (bullmq 300, ...); newest write ...`."""
        if self.loaded is None:
            return f"{self.label}: not measured ({self.error})"
        per = ", ".join(
            f"{name} {n}" for name, n in self.loaded.keys.get("by_category", {}).items() if n
        )
        return (
            f"{self.label}: {self.total} keys ({per or 'none'}); newest write (stream entry) "
            f"{when(self.loaded.newest_ms)}"
        )


@dataclass
class Comparison:
    """Both ways out, measured, and the one that loses less."""

    cut: CutCommands
    aof: Outcome
    rdb: Outcome
    chosen: Choice
    reason: str
    rdb_name: str = "dump.rdb"

    @property
    def other(self) -> Outcome:
        """The way out not chosen."""
        return self.rdb if self.chosen == "aof" else self.aof

    @property
    def winner(self) -> Outcome:
        """The way out chosen."""
        return self.aof if self.chosen == "aof" else self.rdb

    def verb(self, choice: Choice) -> str:
        """`cutting the AOF` / `loading dump.rdb`."""
        return "cutting the AOF" if choice == "aof" else f"loading {self.rdb_name}"

    def other_loses(self) -> str:
        """What the way out not chosen would lose, against the chosen one."""
        mine, theirs = self.winner, self.other
        verb = self.verb(theirs.choice)
        if mine.loaded is None or theirs.loaded is None:
            return f"{verb} instead: not measured ({theirs.error or mine.error})"
        names = sorted(
            set(mine.loaded.keys.get("by_category", {}))
            | set(theirs.loaded.keys.get("by_category", {}))
        )
        lost = {n: mine.count(n) - theirs.count(n) for n in names}
        fewer = {n: d for n, d in lost.items() if d > 0}
        more = {n: -d for n, d in lost.items() if d < 0}
        text = f"{verb} instead would lose {sum(fewer.values())} key(s)"
        if fewer:
            text += " (" + ", ".join(f"{n} {d}" for n, d in fewer.items()) + ")"
        a, b = mine.loaded.newest_ms, theirs.loaded.newest_ms
        if a is not None and b is not None and a > b:
            text += f" and every write after {when(b)} (up to {when(a)})"
        if more:
            text += "; it would keep " + ", ".join(f"{n} {d}" for n, d in more.items())
            text += " key(s) more"
        return text

    def lines(self) -> list[str]:
        """The comparison, one line each, for plan notes and diagnose evidence."""
        label = "cut the AOF" if self.chosen == "aof" else self.rdb_name
        return [
            f"--fix would cut {self.cut.summary}",
            self.aof.line(),
            self.rdb.line(),
            f"chosen: {label} ({self.reason}); {self.other_loses()}",
        ]


def _nonrebuildable(outcome: Outcome, categories: Sequence[Category]) -> int:
    return sum(outcome.count(c.name) for c in categories if not c.rebuildable)


def choose(aof: Outcome, rdb: Outcome, categories: Sequence[Category]) -> tuple[Choice, str]:
    """The way out that loses less: the one whose newest write is later (both are
    prefixes of one history), else more keys that cannot be rebuilt, else more
    keys; cutting the AOF when they tie or cannot be measured."""
    if aof.loaded is None and rdb.loaded is not None:
        return "rdb", "the cut AOF did not load"
    if rdb.loaded is None:
        return "aof", "the RDB could not be measured"
    assert aof.loaded is not None
    a, r = aof.loaded.newest_ms, rdb.loaded.newest_ms
    if a is not None and r is not None and a != r:
        return (
            ("aof", "its newest write is later") if a > r else ("rdb", "its newest write is later")
        )
    keep_a, keep_r = _nonrebuildable(aof, categories), _nonrebuildable(rdb, categories)
    if keep_a != keep_r:
        better: Choice = "aof" if keep_a > keep_r else "rdb"
        return better, "it keeps more keys that cannot be rebuilt"
    if aof.total != rdb.total:
        return ("aof" if aof.total > rdb.total else "rdb"), "it keeps more keys"
    return "aof", "both keep as much"


def _measure(
    outcome: Outcome,
    workdir: Path,
    settings: dict[str, str],
    categories: Sequence[Category],
    timeout: float,
    launcher: Launcher,
) -> Outcome:
    try:
        outcome.loaded = load_and_count(workdir, settings, categories, timeout, launcher)
    except RunbookError as exc:
        outcome.error = exc.message
    except OSError as exc:
        outcome.error = f"{exc.filename or workdir}: {exc.strerror}"
    return outcome


def _copy_cut_aof(aof: AofLayout, layout: DataLayout, bad: Path, offset: int, data: Path) -> None:
    """The AOF as `--fix` would leave it, copied under `data`."""
    if aof.kind == "multi-part":
        copied = data / layout.appenddirname
        shutil.copytree(aof.directory, copied)
        target = copied / bad.name
    else:
        target = data / layout.appendfilename
        shutil.copy2(bad, target)
    with target.open("r+b") as handle:
        handle.truncate(offset)


def compare_outcomes(
    layout: DataLayout,
    aof: AofLayout,
    check: AofCheck,
    cut: CutCommands,
    categories: Sequence[Category],
    timeout: float,
    launcher: Launcher = on_host,
) -> Comparison:
    """Load both ways out on copies (one after the other: they may be big), each in
    a throwaway server of the service's own Redis (`launcher`), and choose. Nothing
    in the data dir is written."""
    bad = damaged_last_file(aof, check)
    assert bad is not None
    assert check.ok_up_to is not None
    timeout = max(timeout, MIN_TIMEOUT_S)
    rdb_saved = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(layout.rdb_path.stat().st_mtime))
    aof_out = Outcome("aof", f"if the AOF is cut at offset {check.ok_up_to} of {bad.name}")
    rdb_out = Outcome("rdb", f"if {layout.dbfilename} is loaded (saved {rdb_saved})")
    aof_settings = {
        "appendonly": "yes",
        "appenddirname": layout.appenddirname,
        "appendfilename": layout.appendfilename,
        "aof-load-truncated": "no",
    }
    root = Path(tempfile.mkdtemp(prefix="redis-runbook-rehearsal-"))
    try:
        aof_size = tree_size(aof.directory) if aof.kind == "multi-part" else tree_size(bad)
        needed = int(max(aof_size, tree_size(layout.rdb_path)) * ROOM_MARGIN)
        try:
            ensure_room(root, needed)
        except RunbookError as exc:
            aof_out.error = rdb_out.error = exc.message
        else:
            work = root / "aof"
            try:
                _copy_cut_aof(aof, layout, bad, check.ok_up_to, work / "data")
                _measure(aof_out, work, aof_settings, categories, timeout, launcher)
            except OSError as exc:
                aof_out.error = f"cannot copy the AOF: {exc.strerror}"
            shutil.rmtree(work, ignore_errors=True)
            work = root / "rdb"
            try:
                (work / "data").mkdir(parents=True)
                shutil.copy2(layout.rdb_path, work / "data" / layout.dbfilename)
                settings = {"dbfilename": layout.dbfilename}
                _measure(rdb_out, work, settings, categories, timeout, launcher)
            except OSError as exc:
                rdb_out.error = f"cannot copy {layout.dbfilename}: {exc.strerror}"
    finally:
        shutil.rmtree(root, ignore_errors=True)
    chosen, reason = choose(aof_out, rdb_out, categories)
    return Comparison(cut, aof_out, rdb_out, chosen, reason, layout.dbfilename)
