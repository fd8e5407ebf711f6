"""The real CLI in a subprocess, and the two ways tests aim it at a server: a config
file of the test's own with the state (journal, locks, XDG) under tmp_path."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis_runbook.journal import Journal
from redis_runbook.lab.server import RedisServer
from tests.support.config import merged, process_service, write_config


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


@dataclass(frozen=True)
class CliEnv:
    """`redis-runbook --config <toml> ...` aimed at one server."""

    config: Path
    state_dir: Path
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """The CLI as a process, stdin closed (no TTY)."""
        return run_cli("--config", str(self.config), *args, env=self.env, timeout=timeout)

    def journal(self) -> list[dict[str, Any]]:
        """Every journal entry written so far."""
        return Journal.in_dir(self.state_dir).tail(10_000)


def process_cli(
    tmp_path: Path, server: RedisServer, extra: Mapping[str, Any] | None = None
) -> CliEnv:
    """The CLI aimed at `server` and allowed to control it: `tmp_path/runbook.toml`
    with [service] kind process on the server's own files, plus the `extra` sections;
    state (journal, locks) under tmp_path."""
    state = tmp_path / "state"
    config = write_config(
        tmp_path / "runbook.toml",
        merged(
            {
                "target": {"url": server.target().url},
                "service": process_service(server),
                "runbook": {"state_dir": str(state)},
            },
            extra,
        ),
    )
    env = {
        "REDIS_RUNBOOK_RUNBOOK__STATE_DIR": str(state),
        "XDG_STATE_HOME": str(tmp_path / "xdg"),
    }
    return CliEnv(config, state, env)


def target_env(
    tmp_path: Path, server: RedisServer, extra: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """The env that aims the CLI at `server` alone (no [service]): REDIS_RUNBOOK_CONFIG
    is `tmp_path/rr.toml` with its [target] plus the `extra` sections, the state
    (journal, locks) under tmp_path."""
    path = write_config(
        tmp_path / "rr.toml", merged({"target": {"url": server.target().url}}, extra)
    )
    return {
        "REDIS_RUNBOOK_CONFIG": str(path),
        "REDIS_RUNBOOK_RUNBOOK__STATE_DIR": str(tmp_path / "state"),
    }
