"""The fault matrix end to end, as an operator walks it: a real fault in a lab,
`diagnose --json` names the scenario and the next command, that command (run as
printed, with --yes) brings Redis back, and every key that survives is verified."""

from __future__ import annotations

import json
import shlex

import pytest
import redis

from redis_runbook import lab
from redis_runbook.lab.faults import inject
from redis_runbook.lab.lifecycle import lab_server
from tests.conftest import Lab
from tests.helpers import run_cli


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
