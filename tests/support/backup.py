"""Backup repositories for the tests: a repokey borg repository, the lab's env
aimed at a repository of the test's own, and `backup create` through the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.cli import run_cli
from tests.support.config import write_config
from tests.support.lab import Lab

PASS_VAR = "TEST_BORG_PASSPHRASE"


def borg_init(repo: Path, base: Path, passphrase: str) -> None:
    """`borg init --encryption=repokey` (the passphrase in the child's env only)."""
    env = {**os.environ, "BORG_BASE_DIR": str(base), "BORG_PASSPHRASE": passphrase}
    subprocess.run(
        ["borg", "init", "--encryption=repokey", str(repo)],
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )


def backup_env(
    lab_env: Lab, tmp_path: Path, kind: str, repo: Path, passphrase: str = ""
) -> dict[str, str]:
    """The lab's env plus [backup] overrides, borg's state and TMPDIR under tmp_path.
    The lab's own [backup] section (its borg repository) is left out: these tests
    bring their own repository and passphrase source."""
    status, env = lab_env
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    config = tomllib.loads(status.config_path.read_text())
    config.pop("backup", None)
    own_config = write_config(tmp_path / "rr-backup.toml", config)
    env = {
        **env,
        "REDIS_RUNBOOK_CONFIG": str(own_config),
        "REDIS_RUNBOOK_BACKUP__KIND": kind,
        "REDIS_RUNBOOK_BACKUP__REPOSITORY": str(repo),
        "BORG_BASE_DIR": str(tmp_path / "borg-base"),
        "TMPDIR": str(scratch),
    }
    if passphrase:
        env["REDIS_RUNBOOK_BACKUP__PASSPHRASE_ENV"] = PASS_VAR
        env[PASS_VAR] = passphrase
    return env


def create(env: dict[str, str]) -> str:
    """Run `backup create --json`; the new archive's name."""
    done = run_cli("--json", "backup", "create", env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert [r["ok"] for r in document["results"]] == [True, True, True]
    listed = run_cli("--json", "backup", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    return str(json.loads(listed.stdout)["archives"][-1]["name"])


def directory_env(lab_env: Lab, tmp_path: Path) -> dict[str, str]:
    repo = tmp_path / "archives"
    repo.mkdir()
    return backup_env(lab_env, tmp_path, "directory", repo)


def edit_metadata(repo: Path, archive: str, edit: Callable[[dict[str, Any]], None]) -> None:
    """Change a directory archive's metadata.json with `edit`, its SHA256SUMS line
    updated too: the archive still extracts with its integrity verified."""
    folder = repo / archive
    metadata_path = folder / "metadata.json"
    metadata = json.loads(metadata_path.read_text())
    edit(metadata)
    metadata_path.write_text(json.dumps(metadata))
    sums = folder / "SHA256SUMS"
    digest = hashlib.sha256(metadata_path.read_bytes()).hexdigest()
    sums.write_text(
        "".join(
            f"{digest}  metadata.json\n" if line.endswith(" metadata.json") else line + "\n"
            for line in sums.read_text().splitlines()
        )
    )
