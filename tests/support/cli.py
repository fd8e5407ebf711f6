"""Helpers shared by tests: run the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """`redis-runbook ARGS` as a new process, without the caller's REDIS_RUNBOOK_*
    variables unless given in `env`; stdin closed, like cron."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_RUNBOOK_")}
    base.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "redis_runbook", *args],
        capture_output=True,
        text=True,
        env=base,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )
