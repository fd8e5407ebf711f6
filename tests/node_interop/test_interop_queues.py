"""`queues status` and `queues recover-stale` against real Node BullMQ v5 producers
and workers: counts agree with Node's getJobCounts; the crash drill (workers and
Redis killed mid-run, Redis back from its AOF) ends with every job completed exactly
once; a job a worker still runs is never moved; a paused queue keeps its jobs."""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import redis

from redis_runbook.lab.server import RedisServer
from tests.support.cli import run_cli, target_env
from tests.support.node import NodeLauncher, NodeProcess
from tests.support.servers import RedisFactory, plain_client
from tests.support.waiting import wait_until


def url(server: RedisServer) -> str:
    return server.target().url


def status(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    result = run_cli("--json", "queues", "status", env=env)
    assert result.returncode == 0, result.stderr
    return {q["queue"]: q for q in json.loads(result.stdout)["queues"]}


def worker(node: NodeLauncher, server: RedisServer, queue: str, **options: Any) -> NodeProcess:
    proc = node("worker.js", {"queue": queue, **options}, redis_url=url(server))
    proc.wait_ready()
    return proc


def members(client: redis.Redis, key: str) -> set[str]:
    """A list's or sorted set's members as strings."""
    kind = client.type(key)
    values: Any = client.lrange(key, 0, -1) if kind == "list" else client.zrange(key, 0, -1)
    return {str(v) for v in values}


def completed_ids(proc: NodeProcess) -> list[str]:
    return [str(e["jobId"]) for e in proc.poll() if e.get("event") == "completed"]


def test_status_counts_equal_node_get_job_counts(
    tmp_path: Path, node: NodeLauncher, redis_server: RedisServer
) -> None:
    at = url(redis_server)
    node.run("producer.js", {"queue": "mixed", "count": 20, "jobIdPrefix": "a-"}, redis_url=at)
    node.run("producer.js", {"queue": "mixed", "count": 5, "jobIdPrefix": "p-",
                             "opts": {"priority": 3}}, redis_url=at)  # fmt: skip
    node.run("producer.js", {"queue": "mixed", "count": 4, "jobIdPrefix": "d-",
                             "opts": {"delay": 3_600_000}}, redis_url=at)  # fmt: skip
    node.run("producer.js", {"queue": "done", "count": 12, "jobIdPrefix": "x-",
                             "data": {"fail": False}}, redis_url=at)  # fmt: skip
    node.run("producer.js", {"queue": "done", "count": 3, "jobIdPrefix": "f-",
                             "data": {"fail": True}}, redis_url=at)  # fmt: skip
    runner = worker(node, redis_server, "done")
    runner.wait_count(lambda e: e.get("event") in ("completed", "failed"), 15, 20)
    runner.terminate()
    busy = worker(node, redis_server, "mixed", concurrency=2, delayMs=60_000)
    busy.wait_count(lambda e: e.get("event") == "active", 2, 10)
    node.run("producer.js", {"queue": "held", "count": 6, "jobIdPrefix": "h-"}, redis_url=at)
    node.run("admin.js", {"action": "pause", "queue": "held"}, redis_url=at)

    ours = status(target_env(tmp_path, redis_server))
    for line in node.run("counts.js", {"queues": ["mixed", "done", "held"]}, redis_url=at):
        theirs, mine = line["counts"], ours[line["queue"]]
        assert mine["wait"] == theirs["waiting"], line
        assert mine["paused_list"] == theirs["paused"], line
        assert mine["active"] == theirs["active"], line
        assert mine["prioritized"] == theirs["prioritized"], line
        assert mine["delayed"] == theirs["delayed"], line
        assert mine["completed"] == theirs["completed"], line
        assert mine["failed"] == theirs["failed"], line
        assert mine["waiting_children"] == theirs["waiting-children"], line
        assert mine["paused"] == line["isPaused"], line
        # Node's own figures, as Node names them: a paused v5 queue has waiting 0, paused N.
        assert mine["waiting"] == theirs["waiting"], line
        assert mine["job_counts"] == theirs, line
        assert mine["waiting_total"] == theirs["waiting"] + theirs["paused"], line
    assert ours["mixed"]["active_split"]["locked"] == 2
    assert ours["mixed"]["workers"] == 1  # Node names its blocking client bull:<base64>
    assert (ours["held"]["waiting"], ours["held"]["job_counts"]["paused"]) == (0, 6)
    busy.kill()


def test_crash_drill_every_job_completes_exactly_once(
    tmp_path: Path, node: NodeLauncher, redis_factory: RedisFactory
) -> None:
    server = redis_factory()
    jobs = 120
    node.run("producer.js", {"queue": "drill", "count": jobs, "jobIdPrefix": "job-",
                             "opts": {"attempts": 3}}, redis_url=url(server))  # fmt: skip
    workers = [
        worker(node, server, "drill", concurrency=4, delayMs=150, lockDuration=4000)
        for _ in range(2)
    ]
    wait_until(lambda: sum(len(completed_ids(w)) for w in workers) >= 30, "30 completions")
    for w in workers:
        w.kill()  # kill -9: handlers die mid-job, locks stay until their PX runs out
    server.kill(signal.SIGKILL)
    server.start()  # back from the AOF
    client = plain_client(server)
    done_before = members(client, "bull:drill:completed")
    assert client.llen("bull:drill:active") > 0

    env = target_env(tmp_path, server)
    recovered = run_cli("--yes", "queues", "recover-stale", "--wait-for-locks", env=env)
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert client.llen("bull:drill:active") == 0

    fresh = worker(node, server, "drill", concurrency=8, skipStalledCheck=True)
    expected = {f"job-{i}" for i in range(jobs)} - done_before
    # The worker's own completion events, not ZCARD: its last line may still be in
    # the pipe when Redis already counts the job.
    fresh.wait_count(lambda e: e.get("event") == "completed", len(expected), 60)
    assert client.zcard("bull:drill:completed") == jobs
    runs = Counter(completed_ids(fresh))
    assert set(runs) == expected
    assert set(runs.values()) == {1}  # exactly once after recovery
    failed = [e for e in fresh.poll() if e.get("event") == "failed"]
    assert failed == []  # none failed for "stalled"
    assert client.zcard("bull:drill:failed") == 0
    fresh.terminate()


def test_a_job_whose_worker_still_runs_is_never_moved(
    tmp_path: Path, node: NodeLauncher, redis_server: RedisServer
) -> None:
    node.run("producer.js", {"queue": "busy", "count": 1, "jobIdPrefix": "long-"},
             redis_url=url(redis_server))  # fmt: skip
    running = worker(node, redis_server, "busy", delayMs=4000, lockDuration=2000)
    running.wait_event("active", 10, jobId="long-0")
    client = plain_client(redis_server)
    token = client.get("bull:busy:long-0:lock")
    assert token is not None
    result = run_cli("--yes", "queues", "recover-stale", env=target_env(tmp_path, redis_server))
    assert result.returncode == 0, result.stdout + result.stderr
    assert client.lrange("bull:busy:active", 0, -1) == ["long-0"]
    assert client.get("bull:busy:long-0:lock") == token
    running.wait_event("completed", 15, jobId="long-0")
    errors = [e for e in running.poll() if e.get("event") == "error"]
    assert errors == []  # no "Missing lock": the run was not disturbed
    running.terminate()


def test_paused_queue_keeps_recovered_jobs_through_a_node_resume(
    tmp_path: Path, node: NodeLauncher, redis_server: RedisServer
) -> None:
    at = url(redis_server)
    node.run("producer.js", {"queue": "held", "count": 10, "jobIdPrefix": "h-"}, redis_url=at)
    dying = worker(node, redis_server, "held", concurrency=3, delayMs=60_000, lockDuration=1000)
    dying.wait_count(lambda e: e.get("event") == "active", 3, 10)
    dying.kill()
    node.run("admin.js", {"action": "pause", "queue": "held"}, redis_url=at)
    client = plain_client(redis_server)
    active = [str(i) for i in client.lrange("bull:held:active", 0, -1)]
    wait_until(lambda: all(client.pttl(f"bull:held:{i}:lock") == -2 for i in active), "expiry")

    result = run_cli("--yes", "queues", "recover-stale", env=target_env(tmp_path, redis_server))
    assert result.returncode == 0, result.stdout + result.stderr
    assert members(client, "bull:held:paused") >= set(active)
    assert client.exists("bull:held:wait") == 0

    node.run("admin.js", {"action": "resume", "queue": "held"}, redis_url=at)
    assert members(client, "bull:held:wait") >= set(active)
    fresh = worker(node, redis_server, "held", concurrency=10, skipStalledCheck=True)
    fresh.wait_count(lambda e: e.get("event") == "completed", 10, 30)
    assert sorted(set(completed_ids(fresh))) == sorted(f"h-{i}" for i in range(10))
    assert client.zcard("bull:held:completed") == 10
    fresh.terminate()
