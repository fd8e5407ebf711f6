"""`lab up --sentinel`, end to end through the real CLI: 1 master, 2 replicas and 3
Sentinels on loopback; `health` reaches the master through Sentinel; `lab status`
names it; `lab down` stops every process; `lab up --sentinel` is idempotent and brings
the same lab back with its data."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from redis_runbook.lab.sentinel_lab import CONFIG_NAME
from redis_runbook.lab.topology import SERVICE
from redis_runbook.service.process import read_pid, wait_exit
from tests.support.cli import run_cli

TOPOLOGY_CHECKS = ("sentinels", "sentinel_quorum", "replicas", "split_brain")
PROBE_KEY = "lab:sentinel:probe"


def _pidfiles(directory: Path) -> list[Path]:
    return [*directory.glob("node-*/redis.pid"), *directory.glob("sentinel-*/sentinel.pid")]


@pytest.fixture
def lab_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "lab"
    yield directory
    for pid_file in _pidfiles(directory):  # whatever a failed test left running
        pid = read_pid(pid_file)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_exit(pid, 10.0)


def processes_of(directory: Path) -> list[str]:
    """redis-server / redis-sentinel processes that belong to `directory`: by their
    command line or, since Redis rewrites its process title to `redis-server ip:port`,
    by their working directory (the lab starts each one in its own directory)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue  # gone, or not ours to read
        if not cmdline.startswith(("redis-server", "redis-sentinel")):
            continue
        if str(directory) in cmdline or Path(cwd).is_relative_to(directory):
            found.append(f"pid {proc.name}: {cmdline.strip()} (cwd {cwd})")
    return found


def cli_json(*args: str, expect: int = 0) -> dict[str, Any]:
    done = run_cli("--json", *args)
    assert done.returncode == expect, f"{args}: exit {done.returncode}\n{done.stderr}"
    document = json.loads(done.stdout)
    assert isinstance(document, dict)
    return document


def pids(status: dict[str, Any]) -> list[int]:
    return [node["pid"] for node in (*status["servers"], *status["sentinels"])]


def ports(status: dict[str, Any]) -> list[int]:
    return [node["port"] for node in (*status["servers"], *status["sentinels"])]


def master_client(status: dict[str, Any]) -> redis.Redis:
    port = int(status["master"].rpartition(":")[2])
    return redis.Redis(port=port, socket_timeout=5, decode_responses=True)


def test_lab_up_sentinel_health_status_down_up(lab_dir: Path) -> None:
    up = cli_json("lab", "up", "--sentinel", "--dir", str(lab_dir))
    assert up["mode"] == "sentinel"
    assert up["running"] is True
    assert up["service"] == SERVICE
    assert len(up["servers"]) == 3
    assert len(up["sentinels"]) == 3
    assert 6379 not in ports(up)
    master_port = up["servers"][0]["port"]
    assert up["master"] == f"127.0.0.1:{master_port}"
    assert [s["role"] for s in up["servers"]] == ["master", "slave", "slave"]

    config_path = lab_dir / CONFIG_NAME
    assert Path(up["config_path"]) == config_path
    config = tomllib.loads(config_path.read_text())
    assert config["target"]["url"] == f"redis://127.0.0.1:{master_port}/0"
    assert config["target"]["sentinel"] == {
        "service": SERVICE,
        "addresses": [f"127.0.0.1:{s['port']}" for s in up["sentinels"]],
    }

    again = cli_json("lab", "up", "--sentinel", "--dir", str(lab_dir))
    assert pids(again) == pids(up), "lab up --sentinel must be idempotent"

    single = run_cli("lab", "up", "--dir", str(lab_dir))
    assert single.returncode != 0, "a single-server lab must not start in a Sentinel lab dir"
    assert "Sentinel lab" in single.stderr
    assert "HINT:" in single.stderr

    # Room for a slow PING on a loaded host (the default warns past 1 ms), as the lab
    # tests allow: this test is about the topology checks.
    relaxed = {
        "REDIS_RUNBOOK_THRESHOLDS__LATENCY_MS__WARNING": "500",
        "REDIS_RUNBOOK_THRESHOLDS__LATENCY_MS__CRITICAL": "1000",
    }
    health = run_cli("--config", str(config_path), "health", "--json", env=relaxed)
    report = json.loads(health.stdout)
    assert report["target"] == f"sentinel:{SERVICE}"
    checks = {check["name"]: check for check in report["checks"]}
    missing = [name for name in TOPOLOGY_CHECKS if name not in checks]
    assert not missing, f"health has no {missing} checks: {sorted(checks)}"
    for name in TOPOLOGY_CHECKS:
        assert checks[name]["status"] == "OK", checks[name]
    assert report["server"]["role"] == "master"
    assert health.returncode == report["exit_code"] == 0, report

    status = cli_json("lab", "status", "--dir", str(lab_dir))
    assert status["running"] is True
    assert status["master"] == up["master"]
    assert pids(status) == pids(up)

    with master_client(status) as client:
        client.set(PROBE_KEY, "kept")
        client.execute_command("WAIT", 2, 5000)  # on both replicas before the stop

    down = cli_json("lab", "down", "--dir", str(lab_dir))
    assert down["running"] is False
    assert all(node["running"] is False for node in (*down["servers"], *down["sentinels"]))
    assert not processes_of(lab_dir), processes_of(lab_dir)
    stopped = run_cli("--json", "lab", "status", "--dir", str(lab_dir))
    assert stopped.returncode == 1, stopped.stderr
    assert json.loads(stopped.stdout)["master"] is None

    back = cli_json("lab", "up", "--sentinel", "--dir", str(lab_dir))
    assert back["running"] is True
    assert ports(back) == ports(up), "the same ports again"
    assert back["master"] == up["master"], "the master when it was brought down"
    with master_client(back) as client:
        assert client.get(PROBE_KEY) == "kept"
    health = run_cli("--config", str(config_path), "health", "--json", env=relaxed)
    assert health.returncode == 0, health.stdout

    cli_json("lab", "down", "--dir", str(lab_dir))
    assert not processes_of(lab_dir), processes_of(lab_dir)


def test_lab_down_without_a_lab_names_the_next_command(tmp_path: Path) -> None:
    done = run_cli("lab", "down", "--dir", str(tmp_path / "nothing"))
    assert done.returncode != 0
    assert "HINT: redis-runbook lab up" in done.stderr
