"""`compose` backend: Redis in Docker Compose, driven exactly as the seed runbook
does (`docker compose [-f F] ps|up -d|stop|logs|exec SERVICE`). Tools run inside
the container (`exec`), or in a one-off container with the same volumes (`run
--rm`) while the service is stopped, like the seed's `docker run --rm -v ...`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from redis_runbook.config import ServiceConfig, TargetConfig
from redis_runbook.service.base import (
    RunState,
    Service,
    ServiceError,
    ServiceState,
    checked_command,
    parse_owner,
    run_command,
    save_now,
)


class ComposeService(Service):
    """One service of a compose project."""

    def __init__(self, service: ServiceConfig, target: TargetConfig) -> None:
        self.file = service.compose_file
        self.name = service.compose_service
        self.data_dir = service.data_dir
        self.container_dir = service.container_data_dir
        self.owner = parse_owner(service.owner)
        self.target = target

    @property
    def data_dir_in_service(self) -> Path:
        return self.container_dir

    def base(self) -> list[str]:
        """`docker compose [-f FILE]`."""
        return ["docker", "compose", *(["-f", str(self.file)] if self.file else [])]

    def describe(self) -> str:
        return f"compose service {self.name}" + (f" ({self.file})" if self.file else "")

    def _checked(self, argv: list[str], timeout: float = 120.0) -> str:
        return checked_command(argv, f"{' '.join(self.base())} ps {self.name}", timeout)

    def state(self) -> ServiceState:
        argv = [*self.base(), "ps", "--all", "--format", "json", self.name]
        try:
            out = self._checked(argv, timeout=30)
        except ServiceError as exc:
            return ServiceState(RunState.UNKNOWN, detail=exc.message)
        rows = _json_rows(out)
        if not rows:
            return ServiceState(RunState.STOPPED, detail="no container for the service")
        row = rows[0]
        state = str(row.get("State", "")).lower()
        detail = str(row.get("Status", state))
        exit_code = row.get("ExitCode")
        code = (
            int(exit_code)
            if isinstance(exit_code, int | str) and str(exit_code).isdigit()
            else None
        )
        if state == "running":
            return ServiceState(RunState.RUNNING, detail=detail)
        if state == "paused":
            return ServiceState(RunState.HUNG, detail=detail)
        return ServiceState(RunState.STOPPED, detail=detail, exit_code=code)

    def start(self) -> None:
        self._checked([*self.base(), "up", "-d", self.name])

    def stop(self, save: bool = True, timeout: float = 30.0) -> None:
        if save and self.state().state is RunState.RUNNING:
            save_now(self.target)
        self._checked([*self.base(), "stop", "-t", str(int(timeout)), self.name], timeout + 30)

    def fence(self, timeout: float = 30.0) -> str:
        """`kill -s SIGKILL` unless it is stopped already (a paused or hung Redis is
        not let run first; a killed container is not restarted by its restart
        policy), then `stop`."""
        killed = self.state().state is not RunState.STOPPED
        if killed:
            self._checked([*self.base(), "kill", "-s", "SIGKILL", self.name], timeout + 30)
        self._checked([*self.base(), "stop", "-t", "0", self.name], timeout + 30)
        return f"{self.describe()} " + ("killed (SIGKILL) and stopped" if killed else "stopped")

    def logs(self, tail: int = 200) -> list[str]:
        argv = [
            *self.base(),
            "logs",
            "--no-color",
            "--no-log-prefix",
            "--tail",
            str(tail),
            self.name,
        ]
        done = run_command(argv, timeout=30)
        return (done.stdout + done.stderr).splitlines()

    def tool_argv(self, argv: list[str]) -> list[str]:
        """The command that runs `argv` next to the data: `exec -T` in the running
        container, or `run --rm` in a one-off one while the service is stopped."""
        if self.state().state is RunState.RUNNING:
            return [*self.base(), "exec", "-T", self.name, *argv]
        return [
            *self.base(),
            "run",
            "--rm",
            "--no-deps",
            "-T",
            "--entrypoint",
            argv[0],
            self.name,
            *argv[1:],
        ]

    def run_tool(
        self, argv: list[str], stdin: str | None = None, timeout: float = 300.0
    ) -> subprocess.CompletedProcess[str]:
        return run_command(self.tool_argv(argv), stdin=stdin, timeout=timeout)


def _json_rows(text: str) -> list[dict[str, object]]:
    """`docker compose ps --format json`: a JSON array (compose < 2.21) or one
    object per line (newer)."""
    text = text.strip()
    if not text:
        return []
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = [json.loads(line) for line in text.splitlines() if line.strip()]
    return data if isinstance(data, list) else [data]
