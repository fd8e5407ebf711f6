"""Stand-ins for `docker`, `systemctl` and `journalctl` on PATH that record their argv
and print a canned reply, or never return (the only stand-ins the project allows), and
the compose and systemd backends aimed at them."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from redis_runbook.config import ServiceConfig, TargetConfig
from redis_runbook.service.compose import ComposeService
from redis_runbook.service.systemd import SystemdService

STAND_IN = """#!{python}
import json, os, sys, time
name = os.path.basename(sys.argv[0])
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps([name, *sys.argv[1:]]) + "\\n")
if sys.argv[1:2] == [os.environ.get("FAKE_HANG_" + name.upper())]:
    time.sleep(3600)  # a manager that does not come back (until it is killed)
reply = os.environ.get("FAKE_REPLY_" + name.upper(), "")
sys.stdout.write(open(reply).read() if reply else "")
sys.exit(int(os.environ.get("FAKE_EXIT_" + name.upper(), "0")))
"""


class StandIns:
    """Stand-in managers on PATH; `calls` lists the argv of every invocation."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.monkeypatch = monkeypatch
        self.log = root / "calls.jsonl"
        bin_dir = root / "bin"
        bin_dir.mkdir()
        for name in ("docker", "systemctl", "journalctl"):
            path = bin_dir / name
            path.write_text(STAND_IN.format(python=sys.executable))
            path.chmod(path.stat().st_mode | stat.S_IXUSR)
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setenv("FAKE_LOG", str(self.log))

    def reply(self, name: str, text: str, exit_code: int = 0) -> None:
        path = self.root / f"reply-{name}"
        path.write_text(text)
        self.monkeypatch.setenv(f"FAKE_REPLY_{name.upper()}", str(path))
        self.monkeypatch.setenv(f"FAKE_EXIT_{name.upper()}", str(exit_code))

    def hang(self, name: str, subcommand: str) -> None:
        """`name subcommand ...` is logged, then never returns until it is killed."""
        self.monkeypatch.setenv(f"FAKE_HANG_{name.upper()}", subcommand)

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        calls = [json.loads(line) for line in self.log.read_text().splitlines()]
        self.log.unlink()
        return calls


def compose(target: TargetConfig | None = None) -> ComposeService:
    config = ServiceConfig(kind="compose", compose_file=Path("/srv/app/docker-compose.yml"))
    return ComposeService(config, target or TargetConfig())


BASE = ["docker", "compose", "-f", "/srv/app/docker-compose.yml"]


def systemd(target: TargetConfig | None = None) -> SystemdService:
    return SystemdService(
        ServiceConfig(kind="systemd", systemd_unit="redis-server"), target or TargetConfig()
    )
