"""Backups of the Redis data files (seed §4.3, §6.4): backends behind one contract
(base.py), `backup create` (create.py) and the restore drill `backup verify`
(verify.py)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from redis_runbook.backup.base import Backend, BackupError
from redis_runbook.backup.borg import BorgBackend
from redis_runbook.backup.directory import DirectoryBackend
from redis_runbook.config.backup import BackupConfig


def make_backend(config: BackupConfig, env: Mapping[str, str] | None = None) -> Backend:
    """The configured backend; BackupError when [backup] repository is not set."""
    if not config.repository:
        raise BackupError(
            "[backup] repository is not set",
            "add [backup] kind and repository to the config (docs/configuration.md)",
        )
    if config.kind == "directory":
        return DirectoryBackend(Path(config.repository), config.archive_glob)
    return BorgBackend(config, env)
