"""`systemd` backend: `systemctl` for state/start/stop, `journalctl -u` for logs
(it holds what Redis printed on stderr too, e.g. FATAL CONFIG FILE ERROR)."""

from __future__ import annotations

import subprocess

from redis_runbook.config import ServiceConfig, TargetConfig
from redis_runbook.service.base import (
    RunState,
    Service,
    ServiceError,
    ServiceState,
    checked_command,
    parse_owner,
    run_command,
    saved_for_stop,
    stop_grace,
)
from redis_runbook.service.process import proc_state


class SystemdService(Service):
    """A systemd unit (Debian's `redis-server`, or your own)."""

    def __init__(self, service: ServiceConfig, target: TargetConfig) -> None:
        self.unit = service.systemd_unit
        self.data_dir = service.data_dir
        self.owner = parse_owner(service.owner)
        self.target = target

    def describe(self) -> str:
        return f"systemd unit {self.unit}"

    def _checked(self, argv: list[str], timeout: float = 120.0) -> str:
        hint = f"systemctl status {self.unit}; journalctl -u {self.unit} -n 50"
        return checked_command(argv, hint, timeout)

    def state(self) -> ServiceState:
        argv = [
            "systemctl",
            "show",
            self.unit,
            "--property",
            "ActiveState,SubState,MainPID,ExecMainStatus",
        ]
        try:
            out = self._checked(argv, timeout=30)
        except ServiceError as exc:
            return ServiceState(RunState.UNKNOWN, detail=exc.message)
        props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        active, sub = props.get("ActiveState", ""), props.get("SubState", "")
        pid = int(props.get("MainPID", "0") or 0) or None
        detail = f"{active} ({sub})"
        status = props.get("ExecMainStatus", "")
        code = int(status) if status.isdigit() else None
        if active in ("active", "activating", "reloading") and pid:
            if proc_state(pid) in ("T", "t"):
                return ServiceState(RunState.HUNG, pid, detail + ", process stopped (SIGSTOP)")
            return ServiceState(RunState.RUNNING, pid, detail)
        return ServiceState(RunState.STOPPED, None, detail, code)

    def start(self) -> None:
        self._checked(["systemctl", "start", self.unit])

    def stop(self, save: bool = True, timeout: float = 30.0) -> None:
        if save and self.state().state is RunState.RUNNING:
            with saved_for_stop(self.target) as seconds:
                self._stop(stop_grace(timeout, seconds))
            return
        self._stop(timeout)

    def _stop(self, timeout: float) -> None:
        """`systemctl stop` (the unit's own stop timeout applies), waited for."""
        self._checked(["systemctl", "stop", self.unit], timeout + 30)

    def fence(self, timeout: float = 30.0) -> str:
        """`systemctl kill --signal=SIGKILL` (`stop` would SIGCONT a hung Redis after
        its SIGTERM, and it would answer queued writes), then `systemctl stop` so
        that Restart= does not start it again. An inactive unit is only stopped."""
        killed = self.state().state is not RunState.STOPPED
        if killed:
            self._checked(
                ["systemctl", "kill", "--signal=SIGKILL", "--kill-whom=all", self.unit],
                timeout + 30,
            )
        self._checked(["systemctl", "stop", self.unit], timeout + 30)
        return f"{self.describe()} " + ("killed (SIGKILL) and stopped" if killed else "stopped")

    def logs(self, tail: int = 200) -> list[str]:
        argv = ["journalctl", "-u", self.unit, "-n", str(tail), "--no-pager", "-o", "cat"]
        done = run_command(argv, timeout=30)
        return done.stdout.splitlines()

    def run_tool(
        self, argv: list[str], stdin: str | None = None, timeout: float = 300.0
    ) -> subprocess.CompletedProcess[str]:
        return run_command(argv, stdin=stdin, timeout=timeout)
