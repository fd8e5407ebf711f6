"""The `[backup]` section of the configuration (seed §4.3, §6.4): where archives go
and where the repository passphrase comes from. Kept apart from config/model.py (which
registers it) so that each module stays small.

    [backup]
    kind = "borg"                                 # or "directory"
    repository = "ssh://backup@nas/./redis"       # a borg repository or a directory
    passphrase_file = "/etc/redis-runbook/borg.pass"   # or passphrase_env / _command
    rsh = "ssh -i /etc/redis-runbook/backup_key"
    archive_pattern = "redis-{date}"
    rpo_hours = 26
    include_conf = true

The passphrase itself never lives in this file, on a command line or in any output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from redis_runbook.config.base import Section

ARCHIVE_DATE = "{date}"


class BackupConfig(Section):
    """`backup create | list | verify`: the repository and its passphrase source."""

    kind: Literal["borg", "directory"] = "borg"
    repository: str | None = None
    passphrase_env: str | None = None
    passphrase_file: Path | None = None
    passphrase_command: list[str] | None = None
    rsh: str | None = None
    borg_binary: str = Field("borg", min_length=1)
    lock_wait_seconds: int = Field(10, ge=0, le=3600)
    timeout_seconds: float = Field(3600.0, gt=0, le=86_400)
    archive_pattern: str = "redis-{date}"
    rpo_hours: float = Field(26.0, gt=0, le=24 * 366)
    include_conf: bool = True
    bgsave_timeout_seconds: float = Field(600.0, gt=0, le=86_400)

    @field_validator("archive_pattern")
    @classmethod
    def _has_date(cls, pattern: str) -> str:
        if pattern.count(ARCHIVE_DATE) != 1:
            raise ValueError(f"expected a name with {ARCHIVE_DATE} once, got {pattern!r}")
        rest = pattern.replace(ARCHIVE_DATE, "")
        if not all(c.isalnum() or c in "-_." for c in rest):
            raise ValueError(f"use only letters, digits, '-', '_', '.' around {ARCHIVE_DATE}")
        return pattern

    @field_validator("passphrase_command")
    @classmethod
    def _non_empty_command(cls, argv: list[str] | None) -> list[str] | None:
        if argv is not None and not argv:
            raise ValueError("expected a command as a list of arguments, got []")
        return argv

    @field_validator("repository")
    @classmethod
    def _non_empty(cls, repository: str | None) -> str | None:
        if repository is not None and not repository.strip():
            raise ValueError("expected a repository location, got an empty string")
        return repository

    @model_validator(mode="after")
    def _one_passphrase(self) -> BackupConfig:
        given = [
            key
            for key, value in (
                ("passphrase_env", self.passphrase_env),
                ("passphrase_file", self.passphrase_file),
                ("passphrase_command", self.passphrase_command),
            )
            if value
        ]
        if len(given) > 1:
            raise ValueError(f"choose one passphrase source, got {' and '.join(given)}")
        if self.passphrase_file is not None and not self.passphrase_file.is_file():
            raise ValueError(
                f"passphrase_file: expected an existing file, got {str(self.passphrase_file)!r}"
            )
        return self

    @property
    def archive_glob(self) -> str:
        """The shell glob matching every archive this config names (`redis-*`)."""
        return self.archive_pattern.replace(ARCHIVE_DATE, "*")
