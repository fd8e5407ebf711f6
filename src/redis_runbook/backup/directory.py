"""Plain directories as backups: `<repository>/<archive name>/` holding the files,
`metadata.json` and `SHA256SUMS` (a checksum of every file, `sha256sum -c` format).
An archive is written as `<name>.partial` and renamed when complete, so a listing
never shows a half-written one."""

from __future__ import annotations

import builtins
import hashlib
import json
import shutil
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis_runbook.backup.base import (
    METADATA_NAME,
    Archive,
    Backend,
    BackupCorrupt,
    BackupError,
    dump_metadata,
    parse_time,
    unknown_archive,
)

SUMS_NAME = "SHA256SUMS"
PARTIAL = ".partial"
CHUNK = 1024 * 1024


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class DirectoryBackend(Backend):
    """Archives as timestamped directories with a checksum manifest."""

    def __init__(self, repository: Path, glob: str = "*") -> None:
        self.root = repository
        self.glob = glob
        self.location = str(repository)

    def _archive_dir(self, name: str) -> Path:
        if not name or "/" in name or name.startswith(".") or name.endswith(PARTIAL):
            raise BackupError(f"invalid archive name {name!r}")
        return self.root / name

    def create(self, name: str, files: Mapping[str, Path], metadata: Mapping[str, Any]) -> Archive:
        """Copy the files into `<repository>/<name>.partial`, write the metadata and
        checksums, then rename it to `<name>`."""
        final = self._archive_dir(name)
        if final.exists():
            raise BackupError(f"archive {name!r} already exists in {self.location}")
        staging = final.with_name(name + PARTIAL)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            staging.mkdir()
            sums: list[str] = []
            for relative, source in files.items():
                target = staging / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
                sums.append(f"{sha256_of(target)}  {relative}")
            (staging / METADATA_NAME).write_text(dump_metadata(metadata) + "\n")
            sums.append(f"{sha256_of(staging / METADATA_NAME)}  {METADATA_NAME}")
            (staging / SUMS_NAME).write_text("\n".join(sums) + "\n")
            staging.rename(final)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise BackupError(
                f"cannot write archive {name!r} in {self.location}: {exc.strerror}",
                f"check that {self.location} exists, is writable and has room",
            ) from None
        return self._record(final)

    def _record(self, path: Path) -> Archive:
        metadata: dict[str, Any] = {}
        try:
            loaded = json.loads((path / METADATA_NAME).read_text())
            if isinstance(loaded, dict):
                metadata = loaded
        except (OSError, ValueError):
            pass
        when = parse_time(str(metadata.get("time", "")))
        if when is None:
            when = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return Archive(name=path.name, time=when, size=size, metadata=metadata)

    def list(self) -> list[Archive]:
        """Every complete archive directory, oldest first."""
        if not self.root.is_dir():
            raise BackupError(
                f"backup directory {self.location} does not exist",
                f"mkdir -p {self.location}   # or fix [backup] repository",
            )
        found = [
            self._record(p)
            for p in self.root.glob(self.glob)
            if p.is_dir() and not p.name.endswith(PARTIAL)
        ]
        return sorted(found, key=lambda a: (a.time, a.name))

    def _sums(self, path: Path) -> builtins.list[tuple[str, str]]:
        try:
            lines = (path / SUMS_NAME).read_text().splitlines()
        except OSError:
            raise BackupCorrupt(f"archive {path.name!r}: {SUMS_NAME} is missing") from None
        pairs = []
        for line in lines:
            digest, _, relative = line.partition("  ")
            if len(digest) != 64 or not relative or relative.startswith("/") or ".." in relative:
                raise BackupCorrupt(f"archive {path.name!r}: bad {SUMS_NAME} line {line!r}")
            pairs.append((digest, relative))
        return pairs

    def _existing(self, name: str) -> Path:
        path = self._archive_dir(name)
        if not path.is_dir():
            known = [a.name for a in self.list()]
            raise unknown_archive(name, known, self.location)
        return path

    def check(self, name: str) -> None:
        """Recompute every file's SHA-256 against SHA256SUMS."""
        path = self._existing(name)
        for digest, relative in self._sums(path):
            file = path / relative
            if not file.is_file():
                raise BackupCorrupt(f"archive {name!r}: {relative} is missing")
            if sha256_of(file) != digest:
                raise BackupCorrupt(
                    f"archive {name!r}: {relative} does not match its checksum (damaged)",
                    f"use another archive: redis-runbook backup list; inspect {file}",
                )

    def extract(self, name: str, dest: Path) -> None:
        """Check the archive, then copy its files into `dest`."""
        self.check(name)
        path = self._archive_dir(name)
        for _digest, relative in self._sums(path):
            target = dest / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path / relative, target)
