"""The contract every backup backend keeps, and the typed records and errors.

- `create(name, files, metadata)` stores `files` (archive path -> file on the host)
  plus `metadata.json` as one archive called `name`; returns its Archive record.
- `list()` returns every archive, oldest first, with the metadata stored with it.
- `extract(name, dest)` writes the archive's files into `dest` (an empty directory),
  verifying their integrity on the way; a damaged archive raises BackupCorrupt.
- `check(name)` verifies the archive without writing anything.

Unknown archive names raise UnknownName listing the known ones. No backend ever
puts a passphrase on a command line or into an error message.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis_runbook.errors import EXIT_REFUSED, EXIT_USAGE, RunbookError, UnknownName

METADATA_NAME = "metadata.json"
#: With nothing to restore, `backup create` is the wrong advice: it would archive the
#: current (broken or empty) data as the `latest`.
NOTHING_TO_RESTORE_HINT = (
    "is [backup] repository where the archives are? redis-runbook config show; "
    "do not run backup create now (it would archive the current data as the latest); "
    "if Redis cannot start on its data and nothing else is left: "
    "redis-runbook recover emergency-start (the data dir is kept aside)"
)


class BackupError(RunbookError):
    """The backup repository could not be used (wrong passphrase, no repository)."""

    exit_code = EXIT_USAGE
    default_hint = "check [backup] in: redis-runbook config show"


class BackupCorrupt(BackupError):
    """An archive (or the repository holding it) is damaged."""


class BackupUnavailable(BackupError):
    """The backup tool is missing or an unsupported version; nothing was done."""

    exit_code = EXIT_REFUSED


@dataclass(frozen=True)
class Archive:
    """One archive: its name, when it was made (UTC), its size in bytes (the files'
    original size; None when unknown) and the metadata stored with it."""

    name: str
    time: datetime
    size: int | None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ours(self) -> bool:
        """True when redis-runbook made it (its metadata is there): an archive someone
        else named like ours has no key counts to judge a restore by."""
        return str(self.metadata.get("tool", "")).startswith("redis-runbook")

    def age_hours(self, now: datetime | None = None) -> float:
        """Hours since the archive was made."""
        return ((now or datetime.now(UTC)) - self.time).total_seconds() / 3600

    def to_json(self) -> dict[str, Any]:
        """The record as JSON (docs/json.md, `backup list`)."""
        keys = self.metadata.get("keys", {})
        return {
            "name": self.name,
            "time": self.time.isoformat(),
            "size": self.size,
            "redis_version": self.metadata.get("redis_version"),
            "rdb_version": self.metadata.get("rdb_version"),
            "keys": keys.get("total") if isinstance(keys, Mapping) else None,
            "keys_by_category": keys.get("by_category") if isinstance(keys, Mapping) else None,
            "foreign": not self.ours,
        }


class Backend(ABC):
    """A place archives are kept (see the module docstring for the contract)."""

    #: Where the archives are, for messages (never holds a secret).
    location: str

    @abstractmethod
    def create(self, name: str, files: Mapping[str, Path], metadata: Mapping[str, Any]) -> Archive:
        """Store `files` and `metadata` as the archive `name`."""

    @abstractmethod
    def list(self) -> list[Archive]:
        """Every archive, oldest first."""

    @abstractmethod
    def extract(self, name: str, dest: Path) -> None:
        """Write the archive's files into `dest`."""

    @abstractmethod
    def check(self, name: str) -> None:
        """Verify the archive's integrity (raises BackupCorrupt)."""

    def find(self, name: str, empty_hint: str = "redis-runbook backup create") -> Archive:
        """The archive called `name`, or `latest` for the newest one. UnknownName
        when there is none (`empty_hint` when there is no archive at all)."""
        archives = self.list()
        if not archives:
            raise UnknownName(f"no archives in {self.location}", empty_hint)
        if name == "latest":
            ours = [a for a in archives if a.ours]
            if not ours:
                foreign = ", ".join(a.name for a in archives[-5:])
                raise UnknownName(
                    f"no archive made by redis-runbook in {self.location}; "
                    f"{len(archives)} without its metadata ({foreign})",
                    "name one explicitly with --archive NAME (its keys cannot be checked), "
                    "or: redis-runbook backup list",
                )
            return max(ours, key=lambda a: a.time)
        for archive in archives:
            if archive.name == name:
                return archive
        raise unknown_archive(name, [a.name for a in archives], self.location)


def unknown_archive(name: str, known: Sequence[str], location: str) -> UnknownName:
    """The error for an archive that does not exist, naming the newest known ones."""
    shown = ", ".join(list(known)[-10:]) or "none"
    more = f" (and {len(known) - 10} older)" if len(known) > 10 else ""
    return UnknownName(
        f"no archive {name!r} in {location}; known archives: {shown}{more}",
        "redis-runbook backup list",
    )


def parse_time(text: str) -> datetime | None:
    """An ISO 8601 time; naive times are taken as local time. None when unparseable."""
    try:
        parsed = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()
    return parsed.astimezone(UTC)


def dump_metadata(metadata: Mapping[str, Any]) -> str:
    """Metadata as the JSON text stored in archives."""
    return json.dumps(metadata, sort_keys=True, separators=(",", ":"), default=str)
