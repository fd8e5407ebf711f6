"""Which archives there are, for advice (diagnose): a restore is named only when
there is an archive a restore can load; otherwise the advice says what works."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from redis_runbook.backup import make_backend
from redis_runbook.backup.base import Archive
from redis_runbook.config.backup import BackupConfig
from redis_runbook.errors import RunbookError


@dataclass(frozen=True)
class Backups:
    """The archives of the configured repository; `error` when it could not be
    listed (wrong passphrase, borg missing), `configured` False with no repository."""

    configured: bool
    location: str = ""
    archives: tuple[Archive, ...] = ()
    error: str | None = None

    @property
    def latest(self) -> Archive | None:
        """The newest archive redis-runbook made (see Archive.ours)."""
        ours = [a for a in self.archives if a.ours]
        return max(ours, key=lambda a: a.time) if ours else None

    def loadable(self, max_rdb_version: int | None) -> Archive | None:
        """The newest archive whose RDB the installed redis-server can load (its
        version recorded in the metadata; unknown counts as loadable)."""
        for archive in sorted(self.archives, key=lambda a: a.time, reverse=True):
            if not archive.ours:
                continue
            version = archive.metadata.get("rdb_version")
            if max_rdb_version is None or not isinstance(version, int):
                return archive
            if version <= max_rdb_version:
                return archive
        return None


def list_backups(config: BackupConfig, env: Mapping[str, str] | None = None) -> Backups:
    """List the configured repository (read-only); never raises for a repository
    that cannot be read: the reason is in `error`."""
    if not config.repository:
        return Backups(configured=False)
    try:
        backend = make_backend(config, env)
        return Backups(True, backend.location, tuple(backend.list()))
    except RunbookError as exc:
        return Backups(True, str(config.repository), error=exc.message)
