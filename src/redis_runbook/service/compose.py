"""`compose` backend: Redis in Docker Compose, driven exactly as the seed runbook
does (`docker compose [-f F] ps|up -d|stop|logs|exec SERVICE`). Tools run inside
the container (`exec`), or in a one-off container with the same volumes (`run
--rm`) while the service is stopped, like the seed's `docker run --rm -v ...`."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path

from redis_runbook.config import ServiceConfig, TargetConfig
from redis_runbook.inflight import process_start
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

#: Terminal control sequences: CSI (`ESC [ ... final`, e.g. the `ESC[2K` that compose
#: 2.26 puts before every `logs --no-log-prefix` line, docker/compose#11727), OSC and
#: two-byte escapes. Log lines are matched against Redis' own messages and printed.
TERMINAL_CODES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")


#: Label of every one-off container `local_argv` runs: `host:pid:start` of the tool
#: run that started it. A tool killed with SIGKILL cannot stop its `docker run`
#: (a killed client does not stop its container), so the next run removes them.
THROWAWAY_LABEL = "io.redis-runbook.throwaway"


def _owner_label() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{process_start(pid)}"


def _orphaned(owner: str) -> bool:
    """True when `owner` (a THROWAWAY_LABEL value) is a tool run on this host that
    has ended; a label from another host is never judged here."""
    host, _, rest = owner.partition(":")
    pid, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    return process_start(int(pid)) != started


def strip_terminal_codes(line: str) -> str:
    """`line` without terminal control sequences."""
    return TERMINAL_CODES.sub("", line)


class ComposeService(Service):
    """One service of a compose project."""

    def __init__(self, service: ServiceConfig, target: TargetConfig) -> None:
        self.file = service.compose_file
        self.name = service.compose_service
        self.data_dir = service.data_dir
        self.container_dir = service.container_data_dir
        self.owner = parse_owner(service.owner)
        self.target = target
        self._image: str | None = None
        self._orphans_removed = False

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
            with saved_for_stop(self.target) as seconds:
                self._stop(stop_grace(timeout, seconds))
            return
        self._stop(timeout)

    def _stop(self, timeout: float) -> None:
        """`compose stop`: SIGTERM, SIGKILL after `timeout` seconds."""
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
        return [strip_terminal_codes(line) for line in (done.stdout + done.stderr).splitlines()]

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

    def image(self) -> str:
        """The service's image (`docker compose config`, read once), e.g. `redis:8.4`."""
        if self._image is None:
            self._image = self._configured_image()
        return self._image

    def _configured_image(self) -> str:
        out = self._checked([*self.base(), "config", "--format", "json"], timeout=30)
        try:
            service = json.loads(out)["services"][self.name]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ServiceError(
                f"{' '.join(self.base())} config names no service {self.name}",
                f"check [service] compose_service; {' '.join(self.base())} config --services",
            ) from None
        image = service.get("image")
        if not isinstance(image, str) or not image:
            raise ServiceError(
                f"compose service {self.name} names no image",
                "give the service an `image:` (a built one is named there too)",
            )
        return image

    def local_argv(self, argv: list[str], paths: Sequence[Path]) -> list[str]:
        """`docker run` of the service's image on the host's network, each path
        mounted at the same path, as root (the files are the tool's, in its temp
        dirs): the Redis that will load the data checks and loads it, whatever
        version the host's own tools are. The container is labelled with this tool
        run; the first call removes those that a killed run left behind."""
        if not self._orphans_removed:
            self.remove_orphans()
            self._orphans_removed = True
        mounts = [arg for path in paths for arg in ("-v", f"{path}:{path}")]
        return [
            "docker", "run", "--rm", "-i", "--network", "host", "--user", "0:0",
            "--label", f"{THROWAWAY_LABEL}={_owner_label()}",
            "--entrypoint", argv[0], *mounts, self.image(), *argv[1:],
        ]  # fmt: skip

    def remove_orphans(self) -> list[str]:
        """Remove the one-off containers of tool runs on this host that have ended
        (killed mid-drill: their throwaway Redis would run on, holding a port and
        memory). Returns their ids."""
        out = self._checked(
            ["docker", "ps", "--all", "--filter", f"label={THROWAWAY_LABEL}",
             "--format", f'{{{{.ID}}}} {{{{.Label "{THROWAWAY_LABEL}"}}}}'],
            timeout=30,
        )  # fmt: skip
        orphans = [
            ident
            for ident, _, owner in (line.partition(" ") for line in out.splitlines())
            if ident and _orphaned(owner.strip())
        ]
        if orphans:
            self._checked(["docker", "rm", "--force", *orphans], timeout=60)
        return orphans


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
