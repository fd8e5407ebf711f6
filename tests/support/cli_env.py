"""Run the CLI against a test server with a config file of its own and the
journal, locks and XDG state inside the test's tmp_path."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis_runbook.journal import Journal
from redis_runbook.lab.server import RedisServer
from tests.support.cli import run_cli


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


def cli_env(tmp_path: Path, server: RedisServer, extra: str = "") -> CliEnv:
    """Write `tmp_path/runbook.toml` for `server` ([service] kind process) plus
    `extra` TOML; state (journal, locks) under tmp_path."""
    state = tmp_path / "state"
    config = tmp_path / "runbook.toml"
    config.write_text(
        f'[target]\nurl = "{server.target().url}"\n\n'
        f'[service]\nkind = "process"\ndata_dir = "{server.data_dir}"\n'
        f'redis_conf = "{server.conf_path}"\npid_file = "{server.pid_path}"\n\n'
        f'[runbook]\nstate_dir = "{state}"\n\n' + extra
    )
    env = {
        "REDIS_RUNBOOK_RUNBOOK__STATE_DIR": str(state),
        "XDG_STATE_HOME": str(tmp_path / "xdg"),
    }
    return CliEnv(config, state, env)
