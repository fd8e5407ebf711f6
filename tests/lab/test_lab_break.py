"""`redis-runbook lab break SCENARIO` through the real CLI, on a real lab: an unknown
scenario changes nothing; a hang is diagnosed and undone; blocked clients outlive
the command (detached holder); a file fault keeps the original and says what to
expect."""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from redis_runbook.lab.lifecycle import CONFIG_NAME
from redis_runbook.service.process import pid_alive
from tests.support.cli import run_cli

# A loaded test machine may stall one PING past the 10 ms default latency threshold.
RELAXED = {
    "REDIS_RUNBOOK_THRESHOLDS__LATENCY_MS__WARNING": "200",
    "REDIS_RUNBOOK_THRESHOLDS__LATENCY_MS__CRITICAL": "400",
}


@pytest.fixture
def lab_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "lab"
    up = run_cli("lab", "up", "--dir", str(directory))
    assert up.returncode == 0, up.stderr
    yield directory
    pid_file = directory / "redis.pid"
    if pid_file.exists():
        pid = int(pid_file.read_text().strip() or 0)
        if pid and pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def files(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "redis.log"
    }


def diagnosis(lab_dir: Path) -> dict[str, Any]:
    done = run_cli("--config", str(lab_dir / CONFIG_NAME), "--json", "diagnose", env=RELAXED)
    document: dict[str, Any] = json.loads(done.stdout)
    assert done.returncode == document["exit_code"]
    return document


def causes(document: dict[str, Any]) -> list[tuple[str, str]]:
    return [(s["code"], s["cause"]) for s in document["scenarios"]]


def test_unknown_scenario_changes_nothing(lab_dir: Path) -> None:
    before = files(lab_dir)
    done = run_cli("lab", "break", "meteor-strike", "--dir", str(lab_dir))
    assert done.returncode == 2
    assert "unknown scenario 'meteor-strike'" in done.stderr
    assert "aof-truncate" in done.stderr
    assert "HINT: redis-runbook lab break --help" in done.stderr
    assert files(lab_dir) == before
    assert causes(diagnosis(lab_dir)) == []


def test_hang_then_unhang(lab_dir: Path) -> None:
    hung = run_cli("lab", "break", "hang", "--dir", str(lab_dir))
    assert hung.returncode == 0, hung.stderr
    assert "expected: scenario A hung" in hung.stdout
    assert causes(diagnosis(lab_dir)) == [("A", "hung")]
    resumed = run_cli("lab", "break", "unhang", "--dir", str(lab_dir))
    assert resumed.returncode == 0, resumed.stderr
    assert "SIGCONT" in resumed.stdout
    assert causes(diagnosis(lab_dir)) == []


def test_blocked_clients_outlive_the_command(lab_dir: Path) -> None:
    done = run_cli(
        "lab", "break", "blocked-clients", "--count", "101", "--seconds", "4",
        "--dir", str(lab_dir),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert causes(diagnosis(lab_dir)) == [("C", "blocked-clients")]


def test_blocked_clients_can_be_killed_and_an_unknown_id_is_short(lab_dir: Path) -> None:
    done = run_cli(
        "lab", "break", "blocked-clients", "--count", "150", "--seconds", "120",
        "--dir", str(lab_dir),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    config = ("--config", str(lab_dir / CONFIG_NAME))
    listed = run_cli(*config, "--json", "clients", "list", "--blocked")
    assert listed.returncode == 0, listed.stderr
    blocked = json.loads(listed.stdout)["clients"]
    assert len(blocked) == 150
    assert {c["name"] for c in blocked} == {"lab-blocked"}
    victim = blocked[0]["id"]
    killed = run_cli(*config, "--yes", "clients", "kill", "--id", str(victim))
    assert killed.returncode == 0, killed.stdout + killed.stderr
    after = json.loads(run_cli(*config, "--json", "clients", "list", "--blocked").stdout)
    assert victim not in [c["id"] for c in after["clients"]]

    unknown = run_cli(*config, "--yes", "clients", "kill", "--id", "999999")
    assert unknown.returncode == 2, unknown.stdout + unknown.stderr
    error = next(line for line in unknown.stderr.splitlines() if line.startswith("error:"))
    assert "149 other clients connected" in error
    assert len(re.findall(r"\b\d{1,6}\b", error)) < 15, error  # a few ids, not all 149
    assert "HINT: redis-runbook clients list" in unknown.stderr


def test_file_fault_keeps_the_original(lab_dir: Path) -> None:
    done = run_cli("--json", "lab", "break", "aof-garbage-last", "--dir", str(lab_dir))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["expect"] == "D aof-format"
    assert report["server"] == "exited"
    (damaged,) = report["files"]
    (original,) = report["backups"]
    assert Path(damaged).stat().st_size > Path(original).stat().st_size
    assert Path(original).parent.parent == lab_dir / "fault-backups"
    document = diagnosis(lab_dir)
    assert ("D", "aof-format") in causes(document)
    assert document["exit_code"] == 2
