"""Node BullMQ v5 workers and producers that find the master through Sentinel keep
working across a planned switchover (`redis-runbook failover`): every job added before
and after it completes, none fails, and the master really moved."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import redis

from redis_runbook.lab.topology import SERVICE, Topology
from tests.support.cli import run_cli
from tests.support.config import write_config
from tests.support.node import Event, NodeLauncher, NodeProcess
from tests.support.waiting import wait_until

QUEUE = "failover-q"
JOBS = 50  # before the switchover, and again after it
WORKER = {
    "queue": QUEUE,
    "concurrency": 2,
    "delayMs": 200,  # 50 jobs take 2.5 s: some are running when the switchover starts
    # A job whose completion the switch cut off is moved back by the stalled checker
    # once its lock has expired: seconds, not the default minute.
    "lockDuration": 4000,
    "stalledInterval": 1000,
}


def sentinel_env(topology: Topology) -> dict[str, str]:
    """REDIS_SENTINELS for the interop scripts (tests/interop/lib.js)."""
    spec = {
        "sentinels": [{"host": "127.0.0.1", "port": s.port} for s in topology.sentinels],
        "name": SERVICE,
    }
    return {"REDIS_SENTINELS": json.dumps(spec)}


def sentinel_config(tmp_path: Path, topology: Topology) -> Path:
    target = topology.target()
    assert target.sentinel is not None
    config = {
        "target": {
            "url": target.url,
            "sentinel": {"service": SERVICE, "addresses": target.sentinel.addresses},
        },
        "runbook": {"state_dir": str(tmp_path / "state")},
    }
    return write_config(tmp_path / "redis-runbook.toml", config)


def completed(workers: list[NodeProcess]) -> list[str]:
    """The job ids completed so far, by every worker (a job may complete twice)."""
    return [
        str(event["jobId"])
        for worker in workers
        for event in worker.poll()
        if event.get("event") == "completed"
    ]


def failed(workers: list[NodeProcess]) -> list[Event]:
    return [e for worker in workers for e in worker.poll() if e.get("event") == "failed"]


def test_node_workers_through_sentinel_survive_a_planned_switchover(
    tmp_path: Path, node: NodeLauncher, topology: Topology
) -> None:
    env = sentinel_env(topology)
    # With REDIS_SENTINELS the scripts ask the Sentinels; the URL only gives the db.
    url = topology.target().url
    config_path = sentinel_config(tmp_path, topology)
    old_master = topology.master_port()

    workers = [node("worker.js", WORKER, redis_url=url, env=env) for _ in range(2)]
    for worker in workers:
        worker.wait_ready(15)
    before = [f"job-{i}" for i in range(JOBS)]
    added = node.run(
        "producer.js", {"queue": QUEUE, "count": JOBS, "jobIdPrefix": "job-"},
        redis_url=url, env=env,
    )  # fmt: skip
    assert added == [{"added": JOBS}]
    wait_until(lambda: len(set(completed(workers))) >= 5, "the first jobs to complete", 15)
    assert len(set(completed(workers))) < JOBS, "the switchover should meet running jobs"

    switch = run_cli("--config", str(config_path), "--yes", "failover", timeout=90)
    assert switch.returncode == 0, f"failover exited {switch.returncode}:\n{switch.stderr}"
    new_master = topology.master_port()
    assert new_master != old_master

    after = [f"job-{i}" for i in range(JOBS, 2 * JOBS)]
    added = node.run(
        "producer.js", {"queue": QUEUE, "count": JOBS, "start": JOBS, "jobIdPrefix": "job-"},
        redis_url=url, env=env,
    )  # fmt: skip
    assert added == [{"added": JOBS}]

    expected = set(before + after)
    wait_until(
        lambda: expected <= set(completed(workers)),
        f"all {2 * JOBS} jobs completed by the workers",
        60,
    )
    # A completion the old master acknowledged after the promotion is not on the new
    # master: that job is still active there, and the stalled checker hands it out again
    # once its lock has expired (at least once). Wait for the new master to agree.
    client = redis.Redis(port=new_master, decode_responses=True, socket_timeout=5)
    with client:

        def finished() -> set[str]:
            members: Any = client.zrange(f"bull:{QUEUE}:completed", 0, -1)
            return set(members)

        def settled() -> bool:
            idle = client.llen(f"bull:{QUEUE}:active") == client.llen(f"bull:{QUEUE}:wait") == 0
            return idle and finished() == expected

        wait_until(settled, f"the new master to hold all {2 * JOBS} jobs as completed", 60)
        assert client.execute_command("ROLE")[0] == "master"
        assert client.zcard(f"bull:{QUEUE}:failed") == 0
    assert failed(workers) == []
    assert set(completed(workers)) == expected  # every job at least once, nothing else

    for worker in workers:
        assert worker.terminate() == 0, worker.stderr_tail()
