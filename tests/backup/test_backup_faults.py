"""Backup repositories in trouble, for real (issue 12, item 16): a Borg repository
whose filesystem is full names the cause Borg itself reports."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.backup import backup_env, borg_init, create
from tests.support.cli import run_cli
from tests.support.lab import Lab


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs (the tests run as root, in CI too)."""
    if os.geteuid() != 0:
        pytest.fail("mounting a tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_repository_disk_says_no_space_left(
    lab_env: Lab, tmp_path: Path, small_fs: Path
) -> None:
    repo = small_fs / "repo"
    borg_init(repo, tmp_path / "borg-base", "correct horse")
    env = backup_env(lab_env, tmp_path, "borg", repo, passphrase="correct horse")
    with (small_fs / "filler").open("wb", buffering=0) as filler:  # a few KiB left
        try:
            while True:
                filler.write(b"\0" * 4096)
        except OSError:
            pass
    result = run_cli("backup", "create", env=env, timeout=120)
    assert result.returncode != 0, result.stdout + result.stderr
    said = " ".join(result.stderr.split())
    assert f"no space left on device for the repository {repo}" in said
    assert "Local Exception" not in said
    assert "Traceback" not in said
    assert f"HINT: free space where it lives (df -h {repo})" in said


def test_a_foreign_archive_named_like_ours_is_never_the_latest(
    lab_env: Lab, tmp_path: Path
) -> None:
    """An archive someone made by hand with our name pattern (no metadata) used to
    become `latest` and fail the drill as 'differ by N keys'. `latest` is the newest
    archive redis-runbook made; the foreign one is marked in `backup list`."""
    repo = tmp_path / "repo"
    base = tmp_path / "borg-base"
    borg_init(repo, base, "correct horse")
    env = backup_env(lab_env, tmp_path, "borg", repo, passphrase="correct horse")
    ours = create(env)
    by_hand = tmp_path / "by-hand.txt"
    by_hand.write_text("not a Redis backup\n")
    subprocess.run(
        ["borg", "create", f"{repo}::redis-29991231T235959Z", str(by_hand)],
        env={**os.environ, "BORG_BASE_DIR": str(base), "BORG_PASSPHRASE": "correct horse"},
        check=True,
        capture_output=True,
        timeout=120,
    )
    listed = json.loads(run_cli("--json", "backup", "list", env=env).stdout)["archives"]
    assert {a["name"]: a["foreign"] for a in listed} == {
        ours: False,
        "redis-29991231T235959Z": True,
    }
    drill = run_cli("--json", "backup", "verify", env=env, timeout=120)
    assert drill.returncode == 0, drill.stdout + drill.stderr
    assert json.loads(drill.stdout)["archive"]["name"] == ours
