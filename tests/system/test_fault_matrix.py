"""The fault matrix end to end, as an operator walks it: a real fault in a lab,
`diagnose --json` names the scenario and the next command, that command (run as
printed, with --yes) brings Redis back, and every key that survives is verified."""

from __future__ import annotations

import json
import re
import shlex

import pytest
import redis

from redis_runbook import lab
from redis_runbook.lab.faults import inject
from redis_runbook.lab.lifecycle import lab_server
from tests.support.cli import run_cli
from tests.support.lab import Lab
from tests.support.server_version import config_error_lines


def durable_keys(status: lab.LabStatus) -> set[bytes]:
    """Keys without a TTL, after an RDB save and an AOF rewrite made them durable:
    whatever recovery does, these must all come back."""
    assert status.port is not None
    with redis.Redis(port=status.port) as client:
        client.save()
        client.bgrewriteaof()
        while client.info("persistence")["aof_rewrite_in_progress"]:
            client.ping()
        return {k for k in client.scan_iter(count=1000) if client.ttl(k) == -1}


@pytest.mark.parametrize(
    ("fault", "code", "cause"),
    [
        ("kill", "A", "crashed"),
        ("hang", "A", "hung"),
        ("aof-truncate", "D", "aof-truncated"),
        ("aof-garbage-last", "D", "aof-format"),
        ("aof-garbage-nonlast", "D", None),
        ("manifest-corrupt", "D", "aof-manifest"),
        ("manifest-missing-file", "D", "aof-missing-file"),
    ],
)
def test_diagnose_then_the_suggested_procedure(
    lab_env: Lab, fault: str, code: str, cause: str | None
) -> None:
    status, env = lab_env
    keys = durable_keys(status)
    assert len(keys) > 100
    inject(fault, lab_server(status.dir))

    diagnosed = run_cli("--json", "diagnose", env=env)
    document = json.loads(diagnosed.stdout)
    assert diagnosed.returncode == 2, document
    scenarios = {(s["code"], s["cause"]): s for s in document["scenarios"]}
    matching = [s for (c, why), s in scenarios.items() if c == code and cause in (None, why)]
    assert matching, f"{fault}: expected {code}/{cause}, got {list(scenarios)}"
    command = shlex.split(matching[0]["next_command"])
    assert command[:2] == ["redis-runbook", "recover"], command

    extra = ["--i-understand-data-loss"] if command[2] in ("aof", "emergency-start") else []
    recovered = run_cli("--yes", *command[1:], *extra, env=env)
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr

    assert status.port is not None
    with redis.Redis(port=status.port) as client:
        assert client.ping()
        assert keys <= set(client.scan_iter(count=1000))
    after = json.loads(run_cli("--json", "diagnose", env=env).stdout)
    assert [s for s in after["scenarios"] if s["code"] in ("A", "D")] == []


def test_config_error_then_the_operator_fix_then_restart(lab_env: Lab) -> None:
    """The evidence names the file, the line and the directive; the operator corrects
    that line as the advice says; the suggested restart brings every key back."""
    status, env = lab_env
    keys = durable_keys(status)
    inject("config-error", lab_server(status.dir))
    document = json.loads(run_cli("--json", "diagnose", env=env).stdout)
    (scenario,) = [s for s in document["scenarios"] if s["cause"] == "config-error"]
    evidence = " ".join(scenario["evidence"])
    assert config_error_lines()[0] in evidence
    conf = status.dir / "redis.conf"
    lines = conf.read_text().splitlines()
    # 7.x names the line (`at line N`); Redis 8 quotes the directive (`>>> '...'`).
    at_line = re.search(r"at line (\d+)", evidence)
    quoted = re.search(r">>> '([^']+)'", evidence)
    assert at_line is not None or quoted is not None, evidence
    bad = lines[int(at_line.group(1)) - 1] if at_line else quoted.group(1) if quoted else ""
    assert bad in evidence  # the diagnosis quotes the very line to fix
    conf.write_text("\n".join(line for line in lines if line != bad) + "\n")

    recovered = run_cli("--yes", *shlex.split(scenario["next_command"])[1:], env=env)
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert status.port is not None
    with redis.Redis(port=status.port) as client:
        assert keys <= set(client.scan_iter(count=1000))


def test_full_disk_then_free_space_and_redis_writes_again(lab_env: Lab) -> None:
    status, env = lab_env
    keys = durable_keys(status)
    injected = inject("disk-full", lab_server(status.dir))
    try:
        document = json.loads(run_cli("--json", "diagnose", env=env).stdout)
        assert ("A", "disk-full") in {(s["code"], s["cause"]) for s in document["scenarios"]}
    finally:
        injected.release()  # the operator frees space (here: the tmpfs goes away)
    restarted = run_cli("--yes", "recover", "restart", env=env)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert status.port is not None
    with redis.Redis(port=status.port) as client:
        assert keys <= set(client.scan_iter(count=1000))
        assert client.set("writes-again", "1")
    health = run_cli("--json", "health", env=env)
    statuses = {c["name"]: c["status"] for c in json.loads(health.stdout)["checks"]}
    assert statuses["aof"] == "OK"


@pytest.mark.parametrize(
    ("fault", "cause"),
    [("rdb-crc", "rdb-crc"), ("rdb-truncate", "rdb-truncated"), ("rdb-newer", "rdb-too-new")],
)
def test_a_broken_rdb_without_an_aof_points_to_a_restore_then_emergency_start(
    lab_env: Lab, fault: str, cause: str
) -> None:
    """With the RDB the only copy of the data (these faults turn the AOF off), nothing
    on the server can be saved: diagnose names the file; with no archive to restore
    (the lab's repository is empty) its next command is the emergency start, which
    brings Redis back empty and keeps the broken file aside."""
    status, env = lab_env
    inject(fault, lab_server(status.dir))
    document = json.loads(run_cli("--json", "diagnose", env=env).stdout)
    found = [s for s in document["scenarios"] if s["cause"] == cause]
    assert len(found) == 1, json.dumps(document, indent=1)  # the whole diagnosis
    (scenario,) = found
    assert scenario["code"] == "D"
    assert scenario["files"] == ["dump.rdb"]
    assert scenario["next_command"] == "redis-runbook recover emergency-start"
    broken = (status.dir / "data" / "dump.rdb").read_bytes()

    started = run_cli("--yes", "recover", "emergency-start", "--i-understand-data-loss", env=env)
    assert started.returncode == 0, started.stdout + started.stderr
    aside = [p for p in status.dir.iterdir() if p.name.startswith("data.")]
    assert (aside[0] / "dump.rdb").read_bytes() == broken  # kept for a later restore
    assert status.port is not None
    with redis.Redis(port=status.port) as client:
        assert client.ping()
        assert client.dbsize() == 0
