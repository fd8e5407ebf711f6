"""Shared fixtures: real redis-server processes on free loopback ports in temp dirs
(never 6379, never mocks), and small helpers to read them and wait on them."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from redis_runbook import lab
from redis_runbook.checks import HealthReport
from redis_runbook.config import Config, ServerExpectations, ServiceConfig, Thresholds, load_config
from redis_runbook.lab.lifecycle import LabStatus
from redis_runbook.lab.seed import SeedPlan, seed
from redis_runbook.lab.server import RedisServer
from redis_runbook.service.process import pid_alive
from redis_runbook.status import CheckResult
from tests.docker_engine import DockerEngine, EngineError, docker_engine
from tests.node import NodeError, NodeLauncher, ensure_node_modules, node_available

T = TypeVar("T")

# The stable top-level keys of `health --json` (docs/json.md).
HEALTH_JSON_KEYS = {
    "target",
    "time",
    "status",
    "exit_code",
    "elapsed_ms",
    "round_trips",
    "server",
    "checks",
}


def pytest_report_header() -> str:
    """Which Redis the session runs on (`./run test` runs one session per version)."""
    exe = shutil.which("redis-server")
    if exe is None:
        return "redis-server: not on PATH"
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    return f"redis-server: {exe}: {version.stdout.strip()}"


class RedisFactory(Protocol):
    """Starts a RedisServer in its own directory under tmp_path."""

    def __call__(
        self,
        settings: Mapping[str, str] | None = None,
        target_overrides: Mapping[str, object] | None = None,
    ) -> RedisServer: ...


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[RedisFactory]:
    """Start servers on demand; every one of them is killed at teardown."""
    started: list[RedisServer] = []

    def make(
        settings: Mapping[str, str] | None = None,
        target_overrides: Mapping[str, object] | None = None,
    ) -> RedisServer:
        server = RedisServer(
            tmp_path / f"r{len(started)}", settings=settings, target_overrides=target_overrides
        )
        started.append(server)  # before start(): a failed start may leave a process behind
        server.start()
        return server

    yield make
    for server in started:
        # Only a process that is still ours and alive: a reaped pid may belong to another.
        if server.process is not None and server.process.poll() is None:
            with contextlib.suppress(Exception):
                server.kill()


@pytest.fixture
def redis_server(redis_factory: RedisFactory) -> RedisServer:
    """One server with the lab's production-like defaults."""
    return redis_factory()


def config_for(
    server: RedisServer,
    *,
    expect: ServerExpectations | None = None,
    **threshold_overrides: object,
) -> Config:
    """A Config aimed at `server`; keyword arguments replace single thresholds
    (e.g. `connected_clients=Band(warning=5, critical=10)`)."""
    return Config(
        target=server.target(),
        server=expect or ServerExpectations(),
        thresholds=Thresholds.model_validate(threshold_overrides),
    )


def process_config(
    server: RedisServer,
    *,
    connect_timeout: float = 1.0,
    expect: ServerExpectations | None = None,
    **threshold_overrides: object,
) -> Config:
    """A Config aimed at `server` whose [service] is the `process` backend on the
    server's own redis.conf, pidfile and log (what `diagnose` and recovery need)."""
    target = server.target().model_copy(update={"connect_timeout": connect_timeout})
    return Config(
        target=target,
        service=ServiceConfig(
            kind="process",
            data_dir=server.data_dir,
            owner=f"{os.getuid()}:{os.getgid()}",
            redis_conf=server.conf_path,
            pid_file=server.pid_path,
            log_file=server.log_path,
        ),
        server=expect or ServerExpectations(),
        thresholds=Thresholds.model_validate(threshold_overrides),
    )


def named(report: HealthReport, name: str) -> CheckResult:
    """The check called `name` in the report (fails the test when absent)."""
    found = [check for check in report.checks if check.name == name]
    assert len(found) == 1, f"no single {name!r} check in {[c.name for c in report.checks]}"
    return found[0]


def plain_client(server: RedisServer, **kwargs: Any) -> redis.Redis:
    """A plain redis-py client (default user) for the test to drive the server with."""
    assert server.port is not None
    options: dict[str, Any] = {
        "socket_timeout": 10.0,
        "decode_responses": True,
        "retry": Retry(NoBackoff(), 0),  # a failure shows at once, not after backoff
    }
    options.update(kwargs)
    return redis.Redis(host="127.0.0.1", port=server.port, **options)


def info(client: redis.Redis, section: str) -> dict[str, Any]:
    """INFO <section> as the dict redis-py parses it into."""
    reply = client.info(section)
    assert isinstance(reply, dict)
    return reply


def wait_until(probe: Callable[[], T | None], what: str, timeout: float = 60.0) -> T:
    """Poll `probe` until it returns something other than None/False, with a deadline
    (generous: a loaded machine is slow, not wrong; a deadline only stops a hang)."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


Lab = tuple[LabStatus, dict[str, str]]


@pytest.fixture
def lab_env(tmp_path: Path) -> Iterator[Lab]:
    """A seeded lab (service kind `process`) and the env that points the CLI at it,
    with the journal and locks under tmp_path and room for a slow PING."""
    status = lab.up(tmp_path / "lab")
    seed(load_config(status.config_path, env={}).config.target, SeedPlan())
    assert status.port is not None
    # The seed's dead locks expire at once; a full SCAN reaps them now (appending
    # their DELs to the AOF) so that the files are quiet while a test compares them.
    with redis.Redis(port=status.port) as client:
        for _ in client.scan_iter(count=1000):
            pass
    env = {
        "REDIS_RUNBOOK_CONFIG": str(status.config_path),
        "REDIS_RUNBOOK_RUNBOOK__STATE_DIR": str(tmp_path / "state"),
        "REDIS_RUNBOOK_THRESHOLDS__LATENCY_MS__WARNING": "500",
        "REDIS_RUNBOOK_THRESHOLDS__LATENCY_MS__CRITICAL": "1000",
    }
    yield status, env
    current = lab.status(status.dir)
    if current.pid and pid_alive(current.pid):
        os.kill(current.pid, signal.SIGCONT)
        os.kill(current.pid, signal.SIGKILL)


# --- Node.js BullMQ v5 interop (tests/interop, driven through tests/node.py) ---------------


@pytest.fixture
def node() -> Iterator[NodeLauncher]:
    """Start Node BullMQ scripts: `node("worker.js", {...}, redis_url=url)` returns a
    NodeProcess, `node.run("counts.js", {...}, redis_url=url)` the lines of a one-shot run.
    Runs `npm ci` first when node_modules does not match package-lock.json; every process
    still running at teardown is killed."""
    if not node_available():
        pytest.skip("Node.js >= 18 and npm are needed for the BullMQ interop tests")
    try:
        ensure_node_modules()
    except NodeError as exc:
        pytest.fail(str(exc), pytrace=False)
    launcher = NodeLauncher()
    yield launcher
    launcher.cleanup()


@pytest.fixture(scope="session")
def engine() -> Iterator[DockerEngine]:
    """One private Docker engine for the session (tests/docker_engine.py)."""
    try:
        context = docker_engine()
        started = context.__enter__()
    except EngineError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield started
    finally:
        context.__exit__(None, None, None)
