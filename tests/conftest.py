"""Shared fixtures: real redis-server processes on free loopback ports in temp dirs
(never 6379, never mocks), a seeded lab, Node BullMQ and a private Docker engine. The
plain helpers the tests import are in tests/support/."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import redis

from redis_runbook import lab
from redis_runbook.config import load_config
from redis_runbook.lab.seed import SeedPlan, seed
from redis_runbook.lab.server import RedisServer
from redis_runbook.lab.topology import Topology, start_topology
from redis_runbook.service.process import pid_alive
from tests.support.docker_engine import DockerEngine, EngineError, docker_engine
from tests.support.lab import Lab
from tests.support.node import (
    NodeError,
    NodeLauncher,
    ensure_node_modules,
    node_available,
)
from tests.support.servers import RedisFactory


def pytest_report_header() -> str:
    """Which Redis the session runs on (`./run test` runs one session per version)."""
    exe = shutil.which("redis-server")
    if exe is None:
        return "redis-server: not on PATH"
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    return f"redis-server: {exe}: {version.stdout.strip()}"


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


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[Topology]:
    """A Sentinel topology (lab/topology.py): 1 master, 2 replicas, 3 redis-sentinel on
    loopback; stopped at teardown."""
    started = start_topology(tmp_path / "topology")
    yield started
    started.stop()


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


# --- Node.js BullMQ v5 interop (tests/interop, driven through tests/support/node.py) ---


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
    """One private Docker engine for the session (tests/support/docker_engine.py)."""
    try:
        context = docker_engine()
        started = context.__enter__()
    except EngineError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield started
    finally:
        context.__exit__(None, None, None)
