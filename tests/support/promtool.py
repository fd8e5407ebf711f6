"""The real `promtool` (Debian package `prometheus`), for the tests that check rules
and PromQL. Missing is a failure, not a skip: `./run` installs it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def run_promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """`promtool ARGS`, output captured, never raising on a non-zero exit."""
    path = shutil.which("promtool")
    assert path, "promtool not found on PATH: apt-get install prometheus"
    return subprocess.run(
        [path, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def check_rules(path: Path) -> str:
    """`promtool check rules FILE` must pass; returns its output."""
    result = run_promtool("check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout
