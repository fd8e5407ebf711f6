"""`failover --to` without Sentinel on a real master + 2 replicas with a writer
(issue 12 items 8 and 9): a hung master (SIGSTOP) is fenced through its [service]
before a replica is promoted, or the promotion does not happen; two masters are a
CRITICAL `split_brain` for `health` and `diagnose`; roles are written to the
servers' config files, and `recover restart` fails when a node comes back in
another role."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from redis_runbook.checks import run_health
from redis_runbook.config import (
    Config,
    RunbookConfig,
    ServiceConfig,
    TargetConfig,
    Thresholds,
)
from redis_runbook.diagnose.engine import diagnose
from redis_runbook.lab.server import RedisServer
from redis_runbook.lab.topology import Topology, start_topology
from redis_runbook.service import ServiceError
from redis_runbook.service.process import pid_alive
from tests.support.cli import run_cli
from tests.support.config import write_config
from tests.support.failover import RELAXED, Writer, role
from tests.support.servers import plain_client
from tests.support.stand_ins import BASE, StandIns, compose, systemd
from tests.support.waiting import wait_until


@pytest.fixture
def replication(tmp_path: Path) -> Iterator[Topology]:
    """A master and two replicas, no Sentinel."""
    top = start_topology(tmp_path / "plain", sentinels=0)
    yield top
    for server in top.servers:  # a test may leave one stopped (SIGSTOP)
        pid = server.pid()
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
    top.stop()


def service_of(server: RedisServer, pid_file: Path | None = None) -> dict[str, str]:
    """[service] kind process for one lab server."""
    return {
        "kind": "process",
        "redis_conf": str(server.conf_path),
        "pid_file": str(pid_file or server.pid_path),
        "log_file": str(server.log_path),
        "data_dir": str(server.data_dir),
    }


def replication_config(
    tmp_path: Path, url_of: RedisServer, replicas: list[RedisServer], service: dict[str, str]
) -> Path:
    document: dict[str, Any] = {
        "target": {
            "url": f"redis://127.0.0.1:{url_of.port}/0",
            "replicas": [f"127.0.0.1:{r.port}" for r in replicas],
        },
        "service": service,
        "thresholds": RELAXED,
        "runbook": {"state_dir": str(tmp_path / "state")},
    }
    return write_config(tmp_path / "runbook.toml", document)


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("--config", str(config), *args, timeout=180)


def roles(top: Topology) -> dict[int, str | None]:
    """port -> ROLE of every lab server that answers."""
    found: dict[int, str | None] = {}
    for server in top.servers:
        assert server.port is not None
        try:
            found[server.port] = str(role(server)[0])
        except Exception:  # a killed node answers nothing
            found[server.port] = None
    return found


def conf_lines(server: RedisServer, key: str) -> list[str]:
    return [
        line.strip()
        for line in server.conf_path.read_text().splitlines()
        if line.strip().split(" ", 1)[0] in (key, "slaveof" if key == "replicaof" else key)
    ]


def steps_of(done: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    return {r["step"]: r for r in json.loads(done.stdout)["results"]}


def settled_offsets(replicas: list[RedisServer]) -> list[int]:
    """Each replica's replication offset once no more of the (stopped) master's
    stream is on its way: two reads half a second apart that agree."""

    def read() -> list[int]:
        return [int(plain_client(r).info("replication")["slave_repl_offset"]) for r in replicas]

    def settled() -> list[int] | None:
        before = read()
        time.sleep(0.5)
        after = read()
        return after if after == before else None

    return wait_until(settled, "the replicas' offsets to settle")


def test_hung_master_is_killed_through_its_service_before_the_promotion(
    replication: Topology, tmp_path: Path
) -> None:
    master, *replicas = replication.servers
    config = replication_config(tmp_path, master, replicas, service_of(master))
    pid = master.pid()
    assert pid is not None
    with Writer(master) as writer:
        os.kill(pid, signal.SIGSTOP)
        acked_before = len(writer.acked)
        # Under load one replica may stop a few bytes behind the other: promoting it
        # is refused (it would lose them), so the test promotes the one ahead.
        offsets = settled_offsets(replicas)
        first = replicas[offsets.index(max(offsets))]
        second = replicas[1 - replicas.index(first)]
        done = cli(
            config,
            "--yes",
            "--json",
            "failover",
            "--to",
            f"127.0.0.1:{first.port}",
            "--i-understand-data-loss",
        )
        assert done.returncode == 0, done.stderr + done.stdout
        assert not pid_alive(pid)  # the fence killed it: nothing to continue
    # A write in flight when it stopped may have been answered; none after.
    assert len(writer.acked) <= acked_before + 1
    assert roles(replication) == {master.port: None, first.port: "master", second.port: "slave"}
    fence = steps_of(done)["fence the old master"]["message"]
    assert "accepts connections but does not answer" in fence
    assert f"killed (pid {pid}" in fence
    assert "replicaof" in done.stdout  # how to restart it as a replica, not a master


def test_hung_master_that_cannot_be_fenced_is_not_promoted(
    replication: Topology, tmp_path: Path
) -> None:
    master, *replicas = replication.servers
    # The [service] names no live process: stopping it stops nothing.
    config = replication_config(
        tmp_path, master, replicas, service_of(master, tmp_path / "none.pid")
    )
    pid = master.pid()
    assert pid is not None
    with Writer(master) as writer:
        os.kill(pid, signal.SIGSTOP)
        # The one ahead (under load the other may stop a few bytes behind, and
        # promoting that one is refused for those bytes before the fence is tried).
        offsets = settled_offsets(replicas)
        first = replicas[offsets.index(max(offsets))]
        second = replicas[1 - replicas.index(first)]
        args = ["--yes", "failover", "--to", f"127.0.0.1:{first.port}"]
        failed = cli(config, *args, "--i-understand-data-loss")
        assert failed.returncode == 1, failed.stderr + failed.stdout
        assert "still accepts connections" in failed.stdout + failed.stderr
        # The operator's word that it is gone does not hold while it accepts connections.
        gone = cli(config, *args, "--old-master-gone", "--i-understand-data-loss")
        assert gone.returncode == 1, gone.stderr + gone.stdout
        assert "accepts connections" in gone.stdout + gone.stderr
        os.kill(pid, signal.SIGCONT)
        wait_until(lambda: len(writer.acked) > 0, "writes")
    assert roles(replication) == {master.port: "master", first.port: "slave", second.port: "slave"}
    assert writer.missing_on(first) == []  # nothing split: the replica still follows


def test_two_masters_are_a_critical_split_brain(replication: Topology, tmp_path: Path) -> None:
    master, first, second = replication.servers
    config = Config(
        target=TargetConfig(
            url=f"redis://127.0.0.1:{master.port}/0",
            replicas=[f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"],
        ),
        service=ServiceConfig.model_validate(service_of(master)),
        thresholds=Thresholds.model_validate(RELAXED),
        runbook=RunbookConfig(state_dir=tmp_path / "state"),
    )

    def split_brain() -> str:
        return {c.name: c.status.name for c in run_health(config, {}).checks}["split_brain"]

    assert split_brain() == "OK"
    with Writer(master):
        plain_client(first).execute_command("REPLICAOF", "NO", "ONE")
        report = run_health(config, {})
        check = next(c for c in report.checks if c.name == "split_brain")
        assert check.status.name == "CRITICAL"
        assert f"127.0.0.1:{master.port}" in check.summary
        assert f"127.0.0.1:{first.port}" in check.summary
        assert int(report.status) == 2
        diagnosis = diagnose(config, {}, tool_timeout=0)
        assert "split-brain" in [s.cause for s in diagnosis.scenarios]
        assert diagnosis.exit_code == 2
    done = cli(replication_config(tmp_path, first, [master, second], service_of(first)), "health")
    assert done.returncode == 2, done.stdout
    assert "split_brain" in done.stdout


def test_failover_to_writes_the_roles_into_the_config_files(
    replication: Topology, tmp_path: Path
) -> None:
    master, first, second = replication.servers
    config = replication_config(tmp_path, master, [first, second], service_of(master))
    with Writer(master) as writer:
        done = cli(config, "--yes", "failover", "--to", f"127.0.0.1:{first.port}")
    assert done.returncode == 0, done.stderr + done.stdout
    assert writer.missing_on(first) == []
    wait_until(lambda: role(second)[:3] == ["slave", "127.0.0.1", first.port], "repointed")
    assert conf_lines(first, "replicaof") == []
    assert conf_lines(master, "replicaof") == [f"replicaof 127.0.0.1 {first.port}"]
    assert conf_lines(second, "replicaof") == [f"replicaof 127.0.0.1 {first.port}"]
    # The tool's own restart of the new master brings it back as the master.
    new = replication_config(tmp_path, first, [master, second], service_of(first))
    restarted = cli(new, "--yes", "recover", "restart")
    assert restarted.returncode == 0, restarted.stderr + restarted.stdout
    assert role(first)[0] == "master"
    plain_client(first).set("after-restart", "1")


def test_restart_fails_when_the_node_comes_back_in_another_role(
    replication: Topology, tmp_path: Path
) -> None:
    master, first, second = replication.servers
    with Writer(master):
        # Promoted by hand, never written to its config: it restarts as a replica.
        plain_client(first).execute_command("REPLICAOF", "NO", "ONE")
    config = replication_config(tmp_path, first, [master, second], service_of(first))
    done = cli(config, "--yes", "recover", "restart")
    assert done.returncode == 1, done.stderr + done.stdout
    assert "came back as slave" in done.stdout + done.stderr
    assert role(first)[0] == "slave"


@pytest.fixture
def managers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StandIns:
    """Stand-in `docker` and `systemctl` that record their argv (test_service_backends)."""
    return StandIns(tmp_path, monkeypatch)


def test_compose_and_systemd_fences_kill_before_they_stop(managers: StandIns) -> None:
    """A hung Redis is never continued first (`stop` would: SIGTERM then SIGCONT, and
    it would answer the writes queued on its sockets); a stopped one is only stopped."""
    managers.reply("docker", '[{"Service":"redis","State":"paused","Status":"Paused"}]')
    assert "killed (SIGKILL)" in compose().fence()
    assert managers.calls() == [
        [*BASE, "ps", "--all", "--format", "json", "redis"],
        [*BASE, "kill", "-s", "SIGKILL", "redis"],
        [*BASE, "stop", "-t", "0", "redis"],
    ]
    managers.reply("docker", "")  # no container
    compose().fence()
    assert managers.calls()[1:] == [[*BASE, "stop", "-t", "0", "redis"]]
    show = "ActiveState=active\nSubState=running\nMainPID={}\nExecMainStatus=0\n"
    managers.reply("systemctl", show.format(os.getpid()))
    assert "killed (SIGKILL)" in systemd().fence()
    assert managers.calls()[1:] == [
        ["systemctl", "kill", "--signal=SIGKILL", "--kill-whom=all", "redis-server"],
        ["systemctl", "stop", "redis-server"],
    ]
    managers.reply("systemctl", "ActiveState=failed\nSubState=failed\nMainPID=0\n", exit_code=0)
    systemd().fence()
    assert managers.calls()[1:] == [["systemctl", "stop", "redis-server"]]
    managers.reply("docker", "[]", exit_code=1)  # the manager fails: the fence did not happen
    with pytest.raises(ServiceError):
        compose().fence()
