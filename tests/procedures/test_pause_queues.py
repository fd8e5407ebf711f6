"""`--pause-queues` on a recovery procedure (procedures/maintenance.py), on a seeded
lab: the running queues are paused before the first step and resumed after the
verification, also when a step fails (and the failure says so); the lab's own paused
queue (`nurturing`, paused by the application) stays paused; with Redis down there
is nothing to pause and the plan says so."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from redis_runbook.bullmq.keys import QueueRef
from redis_runbook.bullmq.pause import set_paused
from redis_runbook.lab.topology import Topology, start_topology
from redis_runbook.procedures.pause import LEDGER
from tests.support.cli import run_cli
from tests.support.failover import cli, role, sentinel_toml, write_topology_config
from tests.support.lab import Lab, journal, lab_client
from tests.support.servers import plain_client

RUNNING = ("enrich-batch", "outreach-send")


def pause_events(client: redis.Redis, queue: str) -> list[str]:
    """The queue's paused/resumed events, oldest first."""
    entries = client.xrange(f"bull:{queue}:events")
    return [f["event"] for _, f in entries if f.get("event") in ("paused", "resumed")]


def paused(client: redis.Redis, queue: str) -> bool:
    return bool(client.hexists(f"bull:{queue}:meta", "paused"))


def test_restart_pauses_the_running_queues_and_resumes_them_after_the_verification(
    lab_env: Lab,
) -> None:
    status, env = lab_env
    client = lab_client(status, decode_responses=True)
    before = {q: pause_events(client, q) for q in (*RUNNING, "nurturing")}
    result = run_cli("--yes", "recover", "restart", "--pause-queues", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "--pause-queues: enrich-batch, outreach-send paused first" in result.stdout
    client = lab_client(status, decode_responses=True)
    for queue in RUNNING:
        assert not paused(client, queue)
        assert pause_events(client, queue) == [*before[queue], "paused", "resumed"]
    assert paused(client, "nurturing")  # the application's pause holds
    assert pause_events(client, "nurturing") == before["nurturing"]
    steps = [e["step"] for e in journal(env) if e["outcome"] in ("done", "failed")]
    assert steps[0] == "pause the queues (enrich-batch, outreach-send)"
    assert steps[-1] == "resume the queues paused first"
    assert steps.index("verify PING and the keyspace") < steps.index(steps[-1])
    ledger = [(e["figures"]["queue"], e["figures"][LEDGER]) for e in journal(env)
              if LEDGER in e["figures"]]  # fmt: skip
    assert sorted(ledger) == sorted((q, k) for q in RUNNING for k in ("paused", "resumed"))


def test_a_failed_restart_still_resumes_the_queues_and_says_so(lab_env: Lab) -> None:
    status, env = lab_env
    # SHUTDOWN SAVE renames its temp file onto dump.rdb: a directory there makes it fail.
    dump = status.dir / "data" / "dump.rdb"
    if dump.exists():
        dump.rename(dump.with_name("dump.rdb.kept-by-test"))
    dump.mkdir()
    result = run_cli("--yes", "recover", "restart", "--pause-queues", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    assert "(stop Redis with SHUTDOWN SAVE) failed" in message
    assert (
        "After the failure: resume the queues paused first: done: "
        "resumed enrich-batch, outreach-send" in message
    )
    client = lab_client(status, decode_responses=True)
    assert [paused(client, q) for q in (*RUNNING, "nurturing")] == [False, False, True]


def test_with_redis_down_nothing_is_paused_and_the_plan_says_so(lab_env: Lab) -> None:
    status, env = lab_env
    lab_client(status, decode_responses=True).shutdown(save=True)
    result = run_cli("--dry-run", "recover", "restart", "--pause-queues", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "--pause-queues: Redis does not answer" in result.stdout
    assert "pause the queues" not in result.stdout


def test_an_emergency_start_keeps_the_record_of_queues_gone_with_the_data(lab_env: Lab) -> None:
    """The data moved aside holds the queues paused: the journal still counts them as
    paused by redis-runbook, so `queues resume --all` resumes them if they come back."""
    _status, env = lab_env
    result = run_cli("--yes", "recover", "emergency-start", "--force", "--pause-queues",
                     "--i-understand-data-loss", env=env)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    [resume] = [e for e in journal(env) if e["step"] == "resume the queues paused first"]
    assert str(resume["message"]).startswith("resumed nothing; enrich-batch: paused by")
    assert "still recorded" in str(resume["message"])
    ledger = [(e["figures"]["queue"], e["figures"][LEDGER]) for e in journal(env)
              if LEDGER in e["figures"]]  # fmt: skip
    assert sorted(ledger) == [(q, "paused") for q in RUNNING]


@pytest.fixture
def replication(tmp_path: Path) -> Iterator[Topology]:
    """A master and two replicas, no Sentinel."""
    top = start_topology(tmp_path / "plain", sentinels=0)
    yield top
    top.stop()


def test_a_failover_to_resumes_the_queues_on_the_promoted_replica(
    replication: Topology, tmp_path: Path
) -> None:
    """Without Sentinel [target] url still names the old master (now a replica): the
    resume finds the master among the old one, the replicas and --to."""
    master, first, second = replication.servers
    old = plain_client(master)
    for queue in ("mail", "held"):
        old.hset(f"bull:{queue}:meta", "opts.maxLenEvents", "10000")
        old.rpush(f"bull:{queue}:wait", f"{queue}-1")
    set_paused(old, QueueRef("bull", "held"), pause=True)  # the application's pause
    config = write_topology_config(
        tmp_path,
        {"url": f"redis://127.0.0.1:{master.port}/0",
         "replicas": [f"127.0.0.1:{r.port}" for r in (first, second)]},
    )  # fmt: skip
    done = cli(config, "--yes", "failover", "--to", f"127.0.0.1:{first.port}", "--pause-queues")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resume the queues paused first: resumed mail" in " ".join(done.stdout.split())
    new = plain_client(first)
    assert role(first)[0] == "master"
    assert pause_events(new, "mail") == ["paused", "resumed"]
    assert new.lrange("bull:mail:wait", 0, -1) == ["mail-1"]
    assert new.hget("bull:held:meta", "paused") == "1"
    assert new.lrange("bull:held:paused", 0, -1) == ["held-1"]


def test_a_sentinel_switchover_pauses_on_the_old_master_and_resumes_on_the_new(
    topology: Topology, tmp_path: Path
) -> None:
    old = topology.server_at(topology.master_port())
    client = plain_client(old)
    client.hset("bull:mail:meta", "opts.maxLenEvents", "10000")
    client.rpush("bull:mail:wait", "mail-1")
    done = cli(sentinel_toml(topology, tmp_path), "--yes", "failover", "--pause-queues")
    assert done.returncode == 0, done.stdout + done.stderr
    new = topology.server_at(topology.master_port())
    assert new is not old
    assert "resume the queues paused first: resumed mail" in " ".join(done.stdout.split())
    assert pause_events(plain_client(new), "mail") == ["paused", "resumed"]
    assert plain_client(new).lrange("bull:mail:wait", 0, -1) == ["mail-1"]
