"""Procedures that are interrupted or fail in an unexpected way (issue 11, items 4, 5,
6, 14 and 23), on real lab servers and real archives: a child of the tool dies with
it, a killed procedure is reported once by the next command with what it left on
disk, an OSError inside a step is a step failure that names where the data is, a
lock key that came back with a backup does not block anything, and a procedure
that holds the target is named when another one is asked for."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from redis_runbook import lab
from redis_runbook.config import load_config
from redis_runbook.lab.server import RedisServer
from redis_runbook.locks import REDIS_LOCK_KEY, file_lock
from redis_runbook.service.process import pid_alive
from redis_runbook.target import display_url
from tests.support.backup import create, directory_env
from tests.support.cli import run_cli
from tests.support.config import write_config
from tests.support.lab import Lab, journal, lab_client
from tests.support.servers import plain_client
from tests.support.stand_ins import StandIns
from tests.support.waiting import wait_until


def children_of(pid: int) -> list[int]:
    """The pids whose parent is `pid` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_a_tool_the_runbook_runs_dies_with_it() -> None:
    """SIGKILL of the tool while a child runs (as `redis-check-aof --fix` did in the
    trial): the child gets SIGKILL too instead of going on alone."""
    script = textwrap.dedent(
        """
        from redis_runbook.service.base import run_command
        run_command(["sleep", "300"], timeout=400)
        """
    )
    tool = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.DEVNULL)
    try:
        child = wait_until(
            lambda: next(iter(children_of(tool.pid)), None), "the tool's child", timeout=60
        )
        tool.kill()
        tool.wait()
        wait_until(
            lambda: not pid_alive(child) or None, f"child {child} to die with the tool", timeout=60
        )
    finally:
        if tool.poll() is None:
            tool.kill()
        for pid in children_of(tool.pid):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def inode_starved_dir(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs where renames still work but no new file or directory can be made."""
    if os.geteuid() != 0:
        pytest.fail("mounting a tmpfs needs root (the tests run as root in CI)")
    mount = tmp_path / "fs"
    mount.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m,nr_inodes=64", "tmpfs", str(mount)], check=True
    )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill_inodes(directory: Path) -> None:
    filler = directory / "filler"
    filler.mkdir()
    n = 0
    while True:
        try:
            (filler / str(n)).touch()
        except OSError:
            return
        n += 1


def test_an_os_error_inside_a_step_is_a_step_failure_that_says_where_the_data_is(
    lab_env: Lab, inode_starved_dir: Path
) -> None:
    """emergency-start on a filesystem out of inodes: the move aside works, the new
    empty data dir cannot be made. Before: an OSError traceback after the data was
    moved, no journal line. Now: step 3 failed, the aside named, journaled."""
    status, env = lab_env
    lab_client(status).shutdown(save=True)
    data = inode_starved_dir / "data"
    data.mkdir()
    for name in ("dump.rdb",):
        (data / name).write_bytes((status.dir / "data" / name).read_bytes())
    fill_inodes(inode_starved_dir)
    env = env | {"REDIS_RUNBOOK_SERVICE__DATA_DIR": str(data)}

    result = run_cli("--yes", "recover", "emergency-start", "--i-understand-data-loss", env=env)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    aside = [p for p in inode_starved_dir.iterdir() if p.name.startswith("data.")]
    assert len(aside) == 1
    assert (aside[0] / "dump.rdb").is_file()
    assert "step 3" in result.stderr
    assert "No space left on device" in result.stderr
    assert f"Left on disk: {aside[0]}" in result.stderr
    outcomes = [(e["procedure"], e["outcome"]) for e in journal(env)]
    assert ("recover emergency-start", "failed") in outcomes
    again = run_cli("journal", env=env)  # a reported failure is not "interrupted" later
    assert "never finished" not in again.stderr


@contextlib.contextmanager
def replica_that_never_acks(client: redis.Redis, port: int) -> Iterator[socket.socket]:
    """A replica that asks for a full sync and never acknowledges an offset: Redis 7+
    then waits `shutdown-timeout` (set here to 10 minutes) for it before a SHUTDOWN
    or SIGTERM lets the server save and exit, as it does for a lagging real replica."""
    client.config_set("shutdown-timeout", 600)
    link = socket.create_connection(("127.0.0.1", port))
    try:
        link.sendall(b"PSYNC ? -1\r\n")
        wait_until(
            lambda: client.info("replication")["connected_slaves"] == 1 or None,
            "the never-acking replica to be listed",
        )
        client.set("runbook-test:offset", 1)  # the master's offset moves past the replica's 0
        yield link
    finally:
        link.close()


def test_a_killed_restore_is_reported_once_and_its_staging_removed(
    lab_env: Lab, tmp_path: Path
) -> None:
    """SIGKILL of `recover restore` while it stops Redis (a replica that never acks
    holds the SHUTDOWN, so the step lasts until the kill): the next command says
    which procedure and step never finished and what is on disk, once; the next
    restore removes the staging dir the killed one left."""
    status, _ = lab_env
    env = directory_env(lab_env, tmp_path)
    archive = create(env)
    state = Path(env["REDIS_RUNBOOK_RUNBOOK__STATE_DIR"])
    assert status.pid is not None
    assert status.port is not None
    pid = status.pid
    with replica_that_never_acks(lab_client(status), status.port):
        tool = subprocess.Popen(
            [sys.executable, "-m", "redis_runbook", "--yes", "recover", "restore", "--archive",
             archive, "--force", "--i-understand-data-loss"],
            env={k: v for k, v in os.environ.items() if not k.startswith("REDIS_RUNBOOK_")} | env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        try:

            def in_first_step() -> bool | None:
                if tool.poll() is not None:
                    pytest.fail(f"the restore ended before it was killed: {tool.communicate()[0]}")
                for path in (state / "inflight").glob("*.json"):
                    if json.loads(path.read_text()).get("step") == 1:
                        return True
                return None

            wait_until(in_first_step, "the restore to start stopping Redis", timeout=120)
            # The step is recorded before its SHUTDOWN is sent: kill only once the
            # server holds that SHUTDOWN (else nothing would ever stop it).
            log = status.dir / "redis.log"
            wait_until(
                lambda: "Waiting for replicas before shutting down" in log.read_text() or None,
                "redis-server to hold the restore's SHUTDOWN for the replica",
                timeout=120,
            )
            assert pid_alive(pid)  # still waiting for the replica: step 1 is not over
            tool.kill()
            tool.wait()
        finally:
            if tool.poll() is None:
                tool.kill()
    # The replica gone, the server finishes the SHUTDOWN it was asked for and exits.
    wait_until(lambda: not pid_alive(pid) or None, "redis-server to exit", timeout=120)
    staging = [p for p in status.dir.glob(".redis-runbook-restore.*")]
    assert len(staging) == 1  # what the trial found left behind

    first = run_cli("journal", env=env)
    assert "recover restore" in first.stderr
    assert "never finished: it stopped at step 1 of 4 (stop Redis" in first.stderr
    assert f"left on disk: {staging[0]}" in first.stderr
    assert f"safe to remove: rm -rf {staging[0]}" in first.stderr
    assert "to finish it: redis-runbook diagnose" in first.stderr
    interrupted = [e for e in journal(env) if e["outcome"] == "interrupted"]
    assert len(interrupted) == 1
    assert interrupted[0]["procedure"] == "recover restore"
    second = run_cli("journal", env=env)
    assert "never finished" not in second.stderr  # once

    planned = run_cli("--dry-run", "recover", "restore", "--archive", archive, "--force", env=env)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert f"removed {staging[0]}: the staging dir of a restore" in " ".join(planned.stdout.split())
    assert not staging[0].exists()
    assert list(status.dir.glob(".redis-runbook-restore.*")) == []


def test_a_restart_killed_while_it_holds_the_save_points_names_how_to_put_them_back(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL of `recover restart` (systemd backend, AOF on) while `systemctl stop`
    has not come back: the tool had set `save ""` for the stop, and Redis, still
    running, keeps it. The next command names the exact CONFIG SET that puts the
    save points back, and running it does."""
    client = plain_client(redis_server)
    previous = client.config_get("save")["save"]
    assert previous  # the lab's save points, AOF on: the stop holds them off
    assert redis_server.process is not None
    managers = StandIns(tmp_path, monkeypatch)
    managers.reply(
        "systemctl",
        f"ActiveState=active\nSubState=running\nMainPID={redis_server.process.pid}\n"
        "ExecMainStatus=0\n",
    )
    managers.hang("systemctl", "stop")
    state = tmp_path / "state"
    config = write_config(
        tmp_path / "runbook.toml",
        {
            "target": {"url": redis_server.target().url},
            "service": {"kind": "systemd", "data_dir": str(redis_server.data_dir)},
            "runbook": {"state_dir": str(state)},
        },
    )
    env = {"REDIS_RUNBOOK_RUNBOOK__STATE_DIR": str(state), "XDG_STATE_HOME": str(tmp_path)}
    tool = subprocess.Popen(
        [sys.executable, "-m", "redis_runbook", "--config", str(config), "--yes",
         "recover", "restart"],
        env={k: v for k, v in os.environ.items() if not k.startswith("REDIS_RUNBOOK_")} | env,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    stopping: list[int] = []
    try:

        def in_the_stop() -> bool | None:
            if tool.poll() is not None:
                pytest.fail(f"the restart ended before it was killed: {tool.communicate()[0]}")
            if not managers.log.exists() or '"stop"' not in managers.log.read_text():
                return None
            stopping.extend(children_of(tool.pid))
            return True

        wait_until(in_the_stop, "the restart to run systemctl stop", timeout=120)
        tool.kill()
        tool.wait()
    finally:
        if tool.poll() is None:
            tool.kill()
        for pid in stopping:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert client.config_get("save") == {"save": ""}  # what the killed tool left

    report = run_cli("--config", str(config), "journal", env=env)

    assert "recover restart" in report.stderr
    assert "never finished: it stopped at step 2 of 5 (stop Redis" in report.stderr
    held = [line for line in report.stderr.splitlines() if "left on the server:" in line]
    assert len(held) == 1, report.stderr
    command = held[0].split("put them back: ", 1)[1]
    assert command.endswith(f'CONFIG SET save "{previous}"')
    [interrupted] = [e for e in journal(env) if e["outcome"] == "interrupted"]
    assert command in str(interrupted["message"])
    put_back = subprocess.run(shlex.split(command), capture_output=True, text=True, check=False)
    assert put_back.returncode == 0, put_back.stdout + put_back.stderr
    assert client.config_get("save") == {"save": previous}
    client.close()


def test_a_lock_key_restored_from_a_backup_blocks_nothing(lab_env: Lab, tmp_path: Path) -> None:
    """Every archive carries the lock `backup create` held during its BGSAVE. After a
    restore it must not be there: on another host it refused every procedure for an
    hour. The restore removes it and says so."""
    status, _ = lab_env
    env = directory_env(lab_env, tmp_path)
    archive = create(env)
    rdb = next((tmp_path / "archives").rglob("dump.rdb"))
    assert REDIS_LOCK_KEY.encode() in rdb.read_bytes()  # the archive has the lock in it

    result = run_cli("--yes", "recover", "restore", "--archive", archive, "--force",
                     "--i-understand-data-loss", env=env, timeout=120)  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    said = " ".join(result.stdout.split())  # the terminal width folds long lines
    assert f"removed the archive's own {REDIS_LOCK_KEY} (held by backup create" in said
    with lab_client(lab.status(status.dir)) as client:
        assert client.exists(REDIS_LOCK_KEY) == 0
    purge = run_cli("--yes", "keys", "purge", "--category", "cache", env=env)
    assert purge.returncode == 0, purge.stdout + purge.stderr


def test_a_procedure_asked_for_while_another_has_redis_down_names_the_holder(
    lab_env: Lab,
) -> None:
    """`keys purge` while `recover restart` holds the target and Redis is down: the
    lock refusal naming the restart (exit 3), not "does not answer PING" (exit 1)."""
    status, env = lab_env
    config = load_config(status.config_path, env=env).config
    where = display_url(config.target.url)
    lab_client(status).shutdown(save=True)
    with file_lock(config.runbook.state_dir / "locks", where, "recover restart"):
        result = run_cli("--yes", "keys", "purge", "--category", "cache", env=env)
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"another redis-runbook procedure is running on {where}: recover restart" in (
        result.stderr
    )
    assert "PING" not in result.stderr


def test_yes_without_the_data_loss_flag_names_the_flag(lab_env: Lab) -> None:
    status, env = lab_env
    lab_client(status).shutdown(save=True)
    result = run_cli("--yes", "recover", "emergency-start", env=env)
    assert result.returncode == 3
    assert "HINT: add --i-understand-data-loss" in result.stderr
    assert (status.dir / "data").is_dir()
