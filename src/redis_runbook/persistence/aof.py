"""The append-only file on disk, in both layouts:

- Redis 7+ multi-part: `<dir>/<appenddirname>/<appendfilename>.manifest` naming one
  BASE (`.base.rdb`, or `.base.aof` with `aof-use-rdb-preamble no`), INCR files in
  sequence order, and HISTORY files awaiting garbage collection. Manifest lines are
  `file <name> seq <n> type <b|i|h>`; the parser below applies the same rules as
  Redis' `aofLoadManifestFromFile` and reports the same reasons.
- Before 7.0: one `<dir>/<appendfilename>` (adopted as BASE by 7.0 on upgrade).

Nothing here writes: listing, parsing and stat only.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from redis_runbook.persistence.layout import DataLayout, PersistenceError

AofType = Literal["b", "i", "h"]
AOF_TYPE_NAMES: dict[str, str] = {"b": "base", "i": "incr", "h": "history"}
MANIFEST_MAX_LINE = 1024


class ManifestError(PersistenceError):
    """The manifest is not one Redis would load (the reason is Redis' own wording)."""

    def __init__(self, reason: str, line_number: int | None = None, line: str | None = None):
        where = f" at line {line_number}" if line_number else ""
        text = f" ('{line}')" if line is not None else ""
        super().__init__(
            f"AOF manifest{where}: {reason}{text}",
            "repair the manifest by hand from the files in the AOF dir, "
            "or restore: redis-runbook recover restore --archive latest",
        )
        self.reason = reason
        self.line_number = line_number
        self.line = line


@dataclass(frozen=True)
class AofFileInfo:
    """One manifest entry."""

    name: str
    seq: int
    type: AofType

    @property
    def kind(self) -> str:
        """base, incr or history."""
        return AOF_TYPE_NAMES[self.type]


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest, entries in file order."""

    entries: tuple[AofFileInfo, ...]

    @property
    def base(self) -> AofFileInfo | None:
        """The BASE file, when there is one."""
        return next((e for e in self.entries if e.type == "b"), None)

    @property
    def incr(self) -> tuple[AofFileInfo, ...]:
        """INCR files in load order."""
        return tuple(e for e in self.entries if e.type == "i")

    @property
    def loaded(self) -> tuple[AofFileInfo, ...]:
        """What Redis loads, in order: BASE then the INCR files."""
        return ((self.base,) if self.base else ()) + self.incr


def _words(line: str) -> list[str] | None:
    try:
        return shlex.split(line, posix=True)
    except ValueError:
        return None


def parse_manifest(text: str) -> Manifest:
    """Parse manifest text with Redis' rules (7.0-8.x): `#` comments, every other
    line `file <name> seq <n> type <t>` (pairs; unknown keys ignored), at most one
    BASE, INCR sequence numbers increasing. Raises ManifestError with Redis' reason."""
    if not text:
        raise ManifestError("Found an empty AOF manifest")
    entries: list[AofFileInfo] = []
    max_seq = 0
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for number, raw in enumerate(lines, start=1):
        if raw.startswith("#"):
            continue
        if len(raw) >= MANIFEST_MAX_LINE:
            raise ManifestError("The AOF manifest file contains too long line", number)
        line = raw.strip(" \t\r\n")
        words = _words(line) if line else None
        if not words or len(words) < 6 or len(words) % 2:
            raise ManifestError("Invalid AOF manifest file format", number, line)
        fields = {words[i].lower(): words[i + 1] for i in range(0, len(words), 2)}
        name, seq_text, type_text = fields.get("file"), fields.get("seq", ""), fields.get("type")
        if name is not None and os.path.basename(name) != name:
            raise ManifestError("File can't be a path, just a filename", number, line)
        seq = int(seq_text) if seq_text.isdigit() else 0
        if not name or not seq or not type_text:
            raise ManifestError("Invalid AOF manifest file format", number, line)
        kind = type_text[0]
        if kind == "b":
            if any(e.type == "b" for e in entries):
                raise ManifestError("Found duplicate base file information", number, line)
            entries.append(AofFileInfo(name, seq, "b"))
        elif kind == "h":
            entries.append(AofFileInfo(name, seq, "h"))
        elif kind == "i":
            if seq <= max_seq:
                raise ManifestError("Found a non-monotonic sequence number", number, line)
            max_seq = seq
            entries.append(AofFileInfo(name, seq, "i"))
        else:
            raise ManifestError("Unknown AOF file type", number, line)
    return Manifest(tuple(entries))


def read_manifest(path: Path) -> Manifest:
    """Read and parse a manifest file (PersistenceError when unreadable)."""
    try:
        text = path.read_bytes().decode(errors="replace")
    except OSError as exc:
        raise PersistenceError(f"cannot read {path}: {exc.strerror}") from None
    return parse_manifest(text)


@dataclass(frozen=True)
class AofFileState:
    """A file the manifest names, as found on disk."""

    info: AofFileInfo
    path: Path
    exists: bool
    size: int | None


@dataclass(frozen=True)
class AofLayout:
    """What the AOF looks like on disk.

    `kind`: `multi-part` (a manifest), `single` (pre-7.0 appendonly.aof),
    `orphaned` (an AOF dir with files but no manifest: a start would create a new,
    empty AOF and ignore them) or `none`.
    """

    kind: Literal["multi-part", "single", "orphaned", "none"]
    directory: Path
    manifest_path: Path | None = None
    manifest: Manifest | None = None
    manifest_error: ManifestError | None = None
    files: tuple[AofFileState, ...] = ()
    unlisted: tuple[str, ...] = ()

    @property
    def loaded(self) -> tuple[AofFileState, ...]:
        """The files Redis would load (BASE + INCR), in order."""
        return tuple(f for f in self.files if f.info.type in ("b", "i"))

    @property
    def missing(self) -> tuple[AofFileState, ...]:
        """Loaded files the manifest names that are not on disk."""
        return tuple(f for f in self.loaded if not f.exists)

    @property
    def last(self) -> AofFileState | None:
        """The last file Redis loads: the only one `redis-check-aof --fix` may cut."""
        return self.loaded[-1] if self.loaded else None

    def is_last(self, name: str) -> bool:
        """True when `name` is the last loaded file (or the single-file AOF)."""
        if self.kind == "single":
            return True
        last = self.last
        return last is not None and last.info.name == name

    @property
    def check_path(self) -> Path | None:
        """What to hand `redis-check-aof`: the manifest, or the single file."""
        if self.kind == "multi-part":
            return self.manifest_path
        if self.kind == "single" and self.files:
            return self.files[0].path
        return None


def _stat(path: Path) -> tuple[bool, int | None]:
    try:
        return True, path.stat().st_size
    except FileNotFoundError:
        return False, None
    except OSError:
        return True, None


def discover_aof(layout: DataLayout) -> AofLayout:
    """Find the AOF of a data dir (host paths): manifest and the files it names,
    which of them are missing, and AOF files in the dir the manifest does not name."""
    aof_dir = layout.aof_dir
    manifest_path = layout.manifest_path
    if manifest_path.exists():
        try:
            manifest: Manifest | None = read_manifest(manifest_path)
            error = None
        except ManifestError as exc:
            manifest, error = None, exc
        files = []
        for entry in manifest.entries if manifest else ():
            exists, size = _stat(aof_dir / entry.name)
            files.append(AofFileState(entry, aof_dir / entry.name, exists, size))
        named = {f.info.name for f in files}
        return AofLayout(
            kind="multi-part",
            directory=aof_dir,
            manifest_path=manifest_path,
            manifest=manifest,
            manifest_error=error,
            files=tuple(files),
            unlisted=_unlisted(aof_dir, layout.appendfilename, named),
        )
    if aof_dir.is_dir():
        unlisted = _unlisted(aof_dir, layout.appendfilename, set())
        if unlisted:
            return AofLayout(kind="orphaned", directory=aof_dir, unlisted=unlisted)
    single = layout.single_aof_path
    if single.is_file():
        exists, size = _stat(single)
        entry = AofFileInfo(single.name, 1, "b")
        return AofLayout(
            kind="single",
            directory=layout.data_dir,
            files=(AofFileState(entry, single, exists, size),),
        )
    return AofLayout(kind="none", directory=aof_dir)


def _unlisted(aof_dir: Path, appendfilename: str, named: set[str]) -> tuple[str, ...]:
    """AOF data files in the dir that the manifest does not name (not temp files)."""
    try:
        names = sorted(p.name for p in aof_dir.iterdir() if p.is_file())
    except OSError:
        return ()
    return tuple(
        name
        for name in names
        if name.startswith(appendfilename + ".")
        and not name.endswith(".manifest")
        and name not in named
    )
