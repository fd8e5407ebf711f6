"""Failover on a real local topology: 1 master, 2 replicas, 3 redis-sentinel on
loopback (lab/topology.py, down-after 2 s). Planned switchover, a master killed with
SIGKILL, the refusals (no quorum, no fit replica, a failover in progress) and manual
promotion without Sentinel, with and without a live master."""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from redis_runbook.checks import run_health
from redis_runbook.config import Config
from redis_runbook.diagnose.engine import diagnose
from redis_runbook.errors import Refused
from redis_runbook.lab.topology import SERVICE, Topology, start_topology
from redis_runbook.monitoring.exporter import scrape_text
from redis_runbook.ports import free_port
from redis_runbook.procedures.context import ProcedureContext
from redis_runbook.procedures.failover import plan_sentinel_failover
from tests.support.cli import run_cli
from tests.support.failover import (
    Writer,
    cli,
    config_of,
    role,
    sentinel_toml,
    write_topology_config,
)
from tests.support.servers import plain_client
from tests.support.waiting import wait_until


def statuses(config: Config) -> dict[str, str]:
    return {c.name: c.status.name for c in run_health(config, {}).checks}


def test_planned_switchover_completes_and_verifies(topology: Topology, tmp_path: Path) -> None:
    before = topology.master_port()
    master = plain_client(topology.server_at(before))
    master.rpush("bull:emails:wait", "1", "2")
    master.hset("bull:emails:meta", "opts.maxLenEvents", "10000")
    done = cli(sentinel_toml(topology, tmp_path), "--yes", "--json", "failover")
    assert done.returncode == 0, done.stderr
    results = {r["step"]: r for r in json.loads(done.stdout)["results"]}
    assert all(r["ok"] for r in results.values())
    after = topology.master_port()
    assert after != before
    assert results["wait for the new master"]["message"].startswith(f"new master 127.0.0.1:{after}")
    followed = results["make the old master follow it, resume writes"]["message"]
    assert f"is now a replica of 127.0.0.1:{after}" in followed
    assert results["compare BullMQ queue counts"]["message"] == "1 queue(s), 2 job(s); unchanged"
    assert plain_client(topology.server_at(after)).llen("bull:emails:wait") == 2
    assert "queues recover-stale" in done.stderr  # the BullMQ follow-up is printed
    config = config_of(topology, tmp_path)
    wait_until(lambda: set(statuses(config).values()) == {"OK"}, "health green", timeout=30)


def test_killed_master_is_diagnosed_promoted_and_followed(
    topology: Topology, tmp_path: Path
) -> None:
    config = config_of(topology, tmp_path)
    old_port = topology.master_port()
    old = topology.server_at(old_port)
    old.kill(signal.SIGKILL)
    diagnosis = diagnose(config, {}, tool_timeout=0)
    assert diagnosis.codes() == ["A"]
    assert diagnosis.scenarios[0].cause == "sentinel-master-down"
    assert f"127.0.0.1:{old_port}" in diagnosis.scenarios[0].summary
    wait_until(lambda: topology.master_port() != old_port, "Sentinel to promote", timeout=30)

    def follows_new_master() -> bool:
        found = statuses(config)
        return "connection" not in found and found["master"] == "OK"

    wait_until(follows_new_master, "health to follow the new master", timeout=30)
    report = run_health(config, {})
    assert report.snapshot.reachable  # redis-runbook follows the new master
    old.start()  # the old master comes back: Sentinel makes it a replica
    wait_until(lambda: set(statuses(config).values()) == {"OK"}, "health green", timeout=45)


def test_refused_without_quorum(topology: Topology, tmp_path: Path) -> None:
    for sentinel in topology.sentinels[:2]:
        sentinel.kill()
    last = redis.Redis(port=topology.sentinels[2].port, decode_responses=True)

    def no_quorum() -> bool:
        try:
            last.execute_command("SENTINEL", "CKQUORUM", SERVICE)
        except redis.ResponseError:
            return True
        return False

    # The last Sentinel counts the others out after down-after-milliseconds (2 s here).
    wait_until(no_quorum, "the last Sentinel to lose quorum")
    last.close()
    before = topology.master_port()
    done = cli(sentinel_toml(topology, tmp_path), "--yes", "failover")
    assert done.returncode == 3
    assert "cannot reach quorum" in done.stderr
    assert "nothing was changed" in done.stderr
    assert topology.master_port() == before


def test_refused_without_a_fit_replica(topology: Topology, tmp_path: Path) -> None:
    master_port = topology.master_port()
    replicas = [s for s in topology.servers if s.port != master_port]
    for server in replicas:
        plain_client(server).config_set("replica-priority", 0)
    config = config_of(topology, tmp_path)

    def sentinels_see_priority_0() -> bool:
        client = redis.Redis(port=topology.sentinels[0].port, decode_responses=True)
        try:
            return all(r["slave-priority"] == 0 for r in client.sentinel_slaves(SERVICE))
        finally:
            client.close()

    wait_until(sentinels_see_priority_0, "Sentinel to read the priorities", timeout=30)
    with pytest.raises(Refused, match="no replica is fit to promote"):
        plan_sentinel_failover(ProcedureContext(config), {})
    assert topology.master_port() == master_port


def test_refused_while_a_failover_is_in_progress(topology: Topology, tmp_path: Path) -> None:
    config = config_of(topology, tmp_path)
    client = redis.Redis(port=topology.sentinels[0].port, decode_responses=True)
    try:
        client.execute_command("SENTINEL", "FAILOVER", SERVICE)
    finally:
        client.close()
    with pytest.raises(Refused, match="already in progress"):
        plan_sentinel_failover(ProcedureContext(config), {})


# --- without Sentinel -------------------------------------------------------------------


@pytest.fixture
def replication(tmp_path: Path) -> Iterator[Topology]:
    """A master and two replicas, no Sentinel."""
    top = start_topology(tmp_path / "plain", sentinels=0)
    yield top
    top.stop()


def plain_toml(top: Topology, tmp_path: Path) -> Path:
    """url: the first server; [service]: its process (the fence before a promotion)."""
    master, *replicas = top.servers
    return write_topology_config(
        tmp_path,
        {
            "url": f"redis://127.0.0.1:{master.port}/0",
            "replicas": [f"127.0.0.1:{r.port}" for r in replicas],
        },
        {
            "kind": "process",
            "redis_conf": str(master.conf_path),
            "pid_file": str(master.pid_path),
            "data_dir": str(master.data_dir),
        },
    )


def test_sentinel_switchover_loses_no_acknowledged_write(
    topology: Topology, tmp_path: Path
) -> None:
    old = topology.server_at(topology.master_port())
    with Writer(old) as writer:
        done = cli(sentinel_toml(topology, tmp_path), "--yes", "failover")
    assert done.returncode == 0, done.stderr
    new = topology.server_at(topology.master_port())
    assert new is not old
    assert len(writer.acked) > 200
    assert writer.missing_on(new) == []


def test_failover_to_with_a_live_master_loses_no_acknowledged_write(
    replication: Topology, tmp_path: Path
) -> None:
    master, first, second = replication.servers
    with Writer(master) as writer:
        done = cli(
            plain_toml(replication, tmp_path),
            "--yes",
            "failover",
            "--to",
            f"127.0.0.1:{first.port}",
        )
    assert done.returncode == 0, done.stderr
    assert role(first)[0] == "master"
    assert role(master)[:3] == ["slave", "127.0.0.1", first.port]
    wait_until(lambda: role(second)[:3] == ["slave", "127.0.0.1", first.port], "repointed")
    assert writer.missing_on(first) == []


def test_dead_master_promotes_the_most_up_to_date_replica(
    replication: Topology, tmp_path: Path
) -> None:
    master, ahead, behind = replication.servers
    client = plain_client(master)
    # One replica loses its link (pointed at a closed port) while the master takes writes.
    plain_client(behind).execute_command("REPLICAOF", "127.0.0.1", free_port())
    for n in range(100):
        client.set(f"late:{n}", n)
    assert client.execute_command("WAIT", 1, 5000) == 1  # the other one has them
    master.kill(signal.SIGKILL)
    plain_client(behind).execute_command("REPLICAOF", "127.0.0.1", master.port)
    config = plain_toml(replication, tmp_path)
    refused = cli(config, "--yes", "failover", "--to", f"127.0.0.1:{behind.port}")
    assert refused.returncode == 3
    assert "bytes behind" in refused.stderr
    assert role(behind)[0] == "slave"  # nothing changed
    needs_flag = cli(config, "--yes", "failover")
    assert needs_flag.returncode == 3  # can lose writes: --yes alone is not enough
    done = cli(config, "--yes", "failover", "--i-understand-data-loss")
    assert done.returncode == 0, done.stderr
    assert role(ahead)[0] == "master"
    assert plain_client(ahead).get("late:99") == "99"
    wait_until(lambda: role(behind)[:3] == ["slave", "127.0.0.1", ahead.port], "repointed")
    # Killed: the fence finds nothing running and its port closed; the old master's
    # config still makes it a master, so the line to set before it starts is named.
    assert "refuses connections" in done.stdout
    assert f"set `replicaof 127.0.0.1 {ahead.port}`" in done.stdout


def test_a_wrong_service_or_dead_sentinels_are_named(topology: Topology, tmp_path: Path) -> None:
    config = config_of(topology, tmp_path)
    assert config.target.sentinel is not None
    wrong = config.model_copy(deep=True)
    assert wrong.target.sentinel is not None
    wrong.target.sentinel.service = "nope"
    check = run_health(wrong, {}).checks[0]
    assert check.status.name == "CRITICAL"
    assert "does not monitor a master called 'nope'" in check.summary
    for sentinel in topology.sentinels:
        sentinel.kill()
    down = run_health(config, {})
    assert down.checks[0].name == "connection"
    assert "no Sentinel answered for mymaster" in down.checks[0].summary
    assert {c.name: c.status.name for c in down.checks}["sentinels"] == "CRITICAL"


def test_reconcile_recovers_stale_jobs_on_the_new_master(
    topology: Topology, tmp_path: Path
) -> None:
    """--reconcile runs recover-stale after the switch: an active job whose worker died
    with the old master (no lock) goes back to wait on the new master."""
    master = plain_client(topology.server_at(topology.master_port()))
    master.hset("bull:mail:meta", "opts.maxLenEvents", "10000")
    master.hset("bull:mail:7", mapping={"name": "send", "data": "{}", "timestamp": "1"})
    master.rpush("bull:mail:active", "7")
    master.execute_command("WAIT", 2, 5000)
    done = cli(sentinel_toml(topology, tmp_path), "--yes", "failover", "--reconcile")
    assert done.returncode == 0, done.stderr
    # Steps of the failover's own plan, on the new master; no reconstruction configured.
    assert "note: no [[reconstruct.sources]] configured" in done.stdout
    assert re.search(r"ok +\d+\. recover stale active jobs on the new master: ", done.stdout)
    new = plain_client(topology.server_at(topology.master_port()))
    assert new.lrange("bull:mail:active", 0, -1) == []
    assert new.lrange("bull:mail:wait", 0, -1) == ["7"]


def test_reconcile_after_failover_to_acts_on_the_promoted_replica(
    replication: Topology, tmp_path: Path
) -> None:
    """Without Sentinel [target] url still names the old master after the switch; the
    reconcile steps act on the replica promoted (they used to run recover-stale on the
    old master, now a replica, which refused, and the stale job stayed)."""
    master, first, _ = replication.servers
    old = plain_client(master)
    old.hset("bull:mail:meta", "opts.maxLenEvents", "10000")
    old.hset("bull:mail:7", mapping={"name": "send", "data": "{}", "timestamp": "1"})
    old.rpush("bull:mail:active", "7")
    old.execute_command("WAIT", 2, 5000)
    done = cli(
        plain_toml(replication, tmp_path),
        "--yes", "failover", "--to", f"127.0.0.1:{first.port}", "--reconcile",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"recover stale active jobs on 127.0.0.1:{first.port}:" in done.stdout
    new = plain_client(first)
    assert new.lrange("bull:mail:active", 0, -1) == []
    assert new.lrange("bull:mail:wait", 0, -1) == ["7"]


def test_the_exporter_exports_the_topology_checks(topology: Topology, tmp_path: Path) -> None:
    config = config_of(topology, tmp_path)

    def statuses_exported() -> dict[str, float]:
        found = {}
        for family in text_string_to_metric_families(scrape_text(config, env={})):
            for sample in family.samples:
                if sample.name == "redis_runbook_check_status":
                    found[sample.labels["check"]] = sample.value
        return found

    healthy = statuses_exported()
    assert healthy["sentinel_quorum"] == 0
    assert healthy["split_brain"] == 0
    for sentinel in topology.sentinels[:2]:
        sentinel.kill()
    # The last Sentinel counts the others out after down-after-milliseconds (2 s here).
    wait_until(lambda: statuses_exported()["sentinel_quorum"] == 2, "no quorum exported")


def test_failover_on_a_unix_socket_target_is_refused_not_aimed_at_6379(tmp_path: Path) -> None:
    """A unix:// target names no HOST:PORT for the replicas to follow; the promotion
    used to guess 127.0.0.1:6379 and could act on a server nobody meant."""
    config = tmp_path / "runbook.toml"
    config.write_text("")
    env = {
        "REDIS_RUNBOOK_CONFIG": str(config),
        "REDIS_RUNBOOK_TARGET__URL": f"unix://{tmp_path}/redis.sock?db=0",
        "REDIS_RUNBOOK_RUNBOOK__STATE_DIR": str(tmp_path / "state"),
    }
    result = run_cli("--yes", "--dry-run", "failover", env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "needs a TCP [target] url" in result.stderr
    assert "6379" not in result.stdout + result.stderr
