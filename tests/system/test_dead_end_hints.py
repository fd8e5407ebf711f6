"""Every next command the tool prints works in the state it is printed in (issue 11,
item 9): followed as printed, with and without a backup, on a real lab.

- after `recover emergency-start`: what to do with the data dir it moved aside
  (look at it; put it back and let `recover aof` load it) — not `recover restore`,
  which reads only archives;
- `recover restore` with no archive: never `backup create` (that would make the
  broken or empty server the latest archive);
- `diagnose` of a broken RDB (the only copy: AOF off): a restore only when there is
  an archive a restore can load, else the emergency start.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import redis

from redis_runbook import lab
from redis_runbook.lab.faults import inject
from redis_runbook.lab.lifecycle import lab_server
from tests.support.cli import run_cli
from tests.support.lab import Lab

DATA_LOSS = "--i-understand-data-loss"


def durable(status: lab.LabStatus) -> set[bytes]:
    """Keys without a TTL (the ones that must come back)."""
    assert status.port is not None
    with redis.Redis(port=status.port) as client:
        return {
            k
            for k in client.scan_iter(count=1000)
            if client.ttl(k) == -1 and not k.startswith(b"redis-runbook:")
        }


def backticked(text: str) -> list[str]:
    """The commands a message quotes between backticks, in order."""
    return re.findall(r"`([^`]+)`", text)


def follow(command: str, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    """Run a printed command as the operator would: redis-runbook through the CLI
    with --yes (and `extra` after the command, e.g. --i-understand-data-loss),
    anything else through the shell."""
    if command.startswith("redis-runbook "):
        words = shlex.split(command)[1:]
        return run_cli("--yes", *words, *extra, env=env, timeout=180)
    return subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=120, check=False
    )


def hint_of(stderr: str) -> str:
    """The HINT: line of an error."""
    lines = [line for line in stderr.splitlines() if line.startswith("HINT:")]
    assert len(lines) == 1, stderr
    return lines[0]


def test_after_an_emergency_start_the_aside_dir_can_be_looked_at_and_put_back(
    lab_env: Lab,
) -> None:
    status, env = lab_env
    keys = durable(status)
    assert status.port is not None
    with redis.Redis(port=status.port) as client:
        client.shutdown(save=True)  # the operator gave up on a Redis that would not start
    started = run_cli("--json", "--yes", "recover", "emergency-start", DATA_LOSS, env=env)
    assert started.returncode == 0, started.stdout + started.stderr
    message = json.loads(started.stdout)["results"][-1]["message"]
    assert "recover restore" not in message  # restore reads only archives
    [aside] = [p for p in status.dir.iterdir() if p.name.startswith("data.")]
    assert str(aside) in message
    commands = backticked(message)
    looks = [c for c in commands if c.startswith("redis-check-")]
    assert {shlex.split(c)[0] for c in looks} == {"redis-check-rdb", "redis-check-aof"}, message
    for command in looks:
        done = follow(command, env)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        assert str(aside) in command
    way_back = [c for c in commands if c not in looks and "queues reconstruct" not in c]
    assert way_back, message
    assert way_back[-1].startswith("redis-runbook recover aof"), way_back
    for command in way_back:
        done = follow(command, env)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
    assert durable(status) == keys  # the old data is live again
    emptied = [p for p in status.dir.iterdir() if p.name.startswith("data.")]
    assert len(emptied) == 1  # the empty start's own data dir, kept too
    assert emptied[0] != aside


def test_restore_without_an_archive_never_hints_backup_create(lab_env: Lab) -> None:
    status, env = lab_env
    assert status.port is not None
    with redis.Redis(port=status.port) as client:
        client.shutdown(save=True)
    data = status.dir / "data"
    before = sorted(p.name for p in data.rglob("*"))
    result = run_cli("--yes", "recover", "restore", "--archive", "latest", DATA_LOSS, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    hint = hint_of(result.stderr)
    assert "backup create" not in hint.replace("not run backup create", "")
    assert "redis-runbook config show" in hint
    assert "redis-runbook recover emergency-start" in hint
    shown = follow("redis-runbook config show", env)
    assert shown.returncode == 0, shown.stderr
    assert sorted(p.name for p in data.rglob("*")) == before
    started = follow("redis-runbook recover emergency-start", env, DATA_LOSS)
    assert started.returncode == 0, started.stdout + started.stderr


def create_archive(env: dict[str, str]) -> str:
    done = run_cli("--json", "backup", "create", env=env, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    listed = run_cli("--json", "backup", "list", env=env, timeout=60)
    return str(json.loads(listed.stdout)["archives"][-1]["name"])


@pytest.mark.parametrize("with_backup", [False, True], ids=["no-backup", "backup"])
@pytest.mark.parametrize(("fault", "cause"), [("rdb-crc", "rdb-crc"), ("rdb-newer", "rdb-too-new")])
def test_a_broken_rdb_is_diagnosed_with_a_next_command_that_works(
    lab_env: Lab, fault: str, cause: str, with_backup: bool
) -> None:
    status, env = lab_env
    keys = durable(status)
    archive = create_archive(env) if with_backup else None
    inject(fault, lab_server(status.dir))
    document = json.loads(run_cli("--json", "diagnose", env=env, timeout=120).stdout)
    [scenario] = [s for s in document["scenarios"] if s["cause"] == cause]
    command = scenario["next_command"]
    if archive is None:
        assert "recover restore" not in command, scenario
        assert command == "redis-runbook recover emergency-start", scenario
    else:
        assert command.startswith("redis-runbook recover restore --archive "), scenario
    done = follow(command, env, DATA_LOSS)
    assert done.returncode == 0, (command, done.stdout, done.stderr)
    assert status.port is not None
    with redis.Redis(port=status.port) as client:
        assert client.ping()
    if archive is not None:
        assert keys <= durable(status)  # the archive's keys are back
    else:
        assert durable(status) == set()
        kept = [p for p in status.dir.iterdir() if p.name.startswith("data.")]
        assert [(p / "dump.rdb").is_file() for p in kept] == [True]


def test_diagnose_with_an_unreadable_repository_names_backup_list(
    lab_env: Lab, tmp_path: Path
) -> None:
    """When the archives cannot be listed (wrong passphrase), diagnose cannot know
    whether a restore would work: it names `backup list`, which says why."""
    status, env = lab_env
    inject("rdb-crc", lab_server(status.dir))
    wrong = tmp_path / "wrong-passphrase"
    wrong.write_text("not-the-passphrase\n")
    env = {**env, "REDIS_RUNBOOK_BACKUP__PASSPHRASE_FILE": str(wrong)}
    document = json.loads(run_cli("--json", "diagnose", env=env, timeout=120).stdout)
    [scenario] = [s for s in document["scenarios"] if s["cause"] == "rdb-crc"]
    assert scenario["next_command"] == "redis-runbook backup list", scenario
    listed = follow(scenario["next_command"], env)
    assert listed.returncode == 2
    assert "passphrase" in listed.stderr
