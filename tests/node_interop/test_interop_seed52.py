"""Real Node BullMQ v5 against real Redis: the interop harness works, and the seed
runbook's §5.2 recovery (`job.moveToFailed(err, 'restart-recovery')` then `job.retry()`)
moves nothing, whether the stuck job's lock is alive or expired (reference/bullmq.md §6).
That is why `redis-runbook queues recover-stale` exists."""

from __future__ import annotations

from typing import Any

import redis

from redis_runbook.lab.server import RedisServer
from tests.support.node import Event, NodeLauncher, NodeProcess, Predicate, bullmq_version
from tests.support.servers import plain_client
from tests.support.waiting import wait_until


def url(server: RedisServer) -> str:
    return server.target().url


def is_event(name: str) -> Predicate:
    return lambda event: event.get("event") == name


def start_stuck_job(
    node: NodeLauncher, server: RedisServer, queue: str, worker: dict[str, Any], attempts: int
) -> NodeProcess:
    """One job `order-0` on `queue`, taken by a worker whose handler takes a minute."""
    added = node.run(
        "producer.js",
        {"queue": queue, "count": 1, "jobIdPrefix": "order-", "opts": {"attempts": attempts}},
        redis_url=url(server),
    )
    assert added == [{"added": 1}]
    proc = node("worker.js", {"queue": queue, "delayMs": 60_000, **worker}, redis_url=url(server))
    proc.wait_event("active", 15, jobId="order-0")
    return proc


def run_seed52(node: NodeLauncher, server: RedisServer) -> tuple[list[Event], Event]:
    """The seed's script as written (KEYS discovery included): per-job lines, summary."""
    lines = node.run("seed52.js", {}, redis_url=url(server))
    return lines[:-1], lines[-1]


def assert_still_stuck(client: redis.Redis, queue: str, job_before: Any) -> None:
    """order-0 is exactly where it was: in active, nowhere else, its hash untouched."""
    assert client.lrange(f"bull:{queue}:active", 0, -1) == ["order-0"]
    assert client.llen(f"bull:{queue}:wait") == 0
    assert client.llen(f"bull:{queue}:paused") == 0
    assert client.zcard(f"bull:{queue}:failed") == 0
    assert client.zcard(f"bull:{queue}:delayed") == 0
    assert client.hgetall(f"bull:{queue}:order-0") == job_before


def test_seed52_moves_nothing_while_the_lock_is_alive(
    node: NodeLauncher, redis_server: RedisServer
) -> None:
    client = plain_client(redis_server)
    start_stuck_job(node, redis_server, "live", {}, attempts=3)
    lock_key = "bull:live:order-0:lock"
    token = client.get(lock_key)
    assert token is not None
    assert client.pttl(lock_key) > 0
    job_before = client.hgetall("bull:live:order-0")

    jobs, summary = run_seed52(node, redis_server)

    assert summary["queues"] == ["live"]
    assert summary["jobs"] == 1
    assert summary["moved"] == 0
    # attempts left, so moveToFailed takes the retryJob path; the lock's token is the
    # worker's, not 'restart-recovery'.
    assert jobs == [
        {
            "queue": "live",
            "jobId": "order-0",
            "stateBefore": "active",
            "moveToFailed": "Lock mismatch for job order-0. Cmd retryJob from active",
            "retry": "Job order-0 is not in the failed state. reprocessJob",
            "stateAfter": "active",
        }
    ]
    assert [(e["step"], e["jobId"]) for e in summary["errors"]] == [
        ("moveToFailed", "order-0"),
        ("retry", "order-0"),
    ]
    assert_still_stuck(client, "live", job_before)
    assert client.get(lock_key) == token  # the running worker's lock is untouched


def test_seed52_moves_nothing_after_the_lock_expired(
    node: NodeLauncher, redis_server: RedisServer
) -> None:
    client = plain_client(redis_server)
    # A 1 s lock, then the crash drill: the worker dies mid-job, nothing renews the lock,
    # and no worker is left to run the stalled check.
    worker = start_stuck_job(node, redis_server, "dead", {"lockDuration": 1000}, attempts=1)
    worker.kill()
    lock_key = "bull:dead:order-0:lock"
    wait_until(lambda: client.pttl(lock_key) == -2, "the dead worker's lock to expire", 10)
    job_before = client.hgetall("bull:dead:order-0")

    jobs, summary = run_seed52(node, redis_server)

    assert summary["queues"] == ["dead"]
    assert summary["jobs"] == 1
    assert summary["moved"] == 0
    # attempts exhausted, so moveToFailed takes the moveToFinished path.
    assert jobs == [
        {
            "queue": "dead",
            "jobId": "order-0",
            "stateBefore": "active",
            "moveToFailed": "Missing lock for job order-0. moveToFinished",
            "retry": "Job order-0 is not in the failed state. reprocessJob",
            "stateAfter": "active",
        }
    ]
    assert_still_stuck(client, "dead", job_before)
    assert client.exists(lock_key) == 0


def test_harness_smoke_50_jobs_completed(node: NodeLauncher, redis_server: RedisServer) -> None:
    client = plain_client(redis_server)
    added = node.run(
        "producer.js",
        {"queue": "smoke", "count": 50, "jobIdPrefix": "smoke-", "chunk": 20, "data": {"n": "{i}"}},
        redis_url=url(redis_server),
    )
    assert added == [{"added": 50}]
    assert client.hget("bull:smoke:meta", "version") == f"bullmq:{bullmq_version()}"
    assert client.hget("bull:smoke:smoke-7", "data") == '{"n":"7","i":7}'

    worker = node("worker.js", {"queue": "smoke", "concurrency": 5}, redis_url=url(redis_server))
    worker.wait_ready()
    done = worker.wait_count(is_event("completed"), 50, 30, what="50 completed jobs")
    assert sorted(e["jobId"] for e in done) == sorted(f"smoke-{i}" for i in range(50))
    assert worker.matching(lambda e: e["event"] in ("failed", "error", "stalled")) == []

    [counts] = node.run("counts.js", {"queues": ["smoke"]}, redis_url=url(redis_server))
    assert counts["isPaused"] is False
    assert counts["counts"] == {
        "active": 0,
        "completed": 50,
        "delayed": 0,
        "failed": 0,
        "paused": 0,
        "prioritized": 0,
        "waiting": 0,
        "waiting-children": 0,
    }
    assert worker.terminate() == 0
    assert worker.events[-1]["event"] == "closed"


def test_harness_pause_uses_the_v5_paused_list(
    node: NodeLauncher, redis_server: RedisServer
) -> None:
    client = plain_client(redis_server)
    redis_url = url(redis_server)
    node.run("producer.js", {"queue": "held", "count": 3, "jobIdPrefix": "h-"}, redis_url=redis_url)

    [paused] = node.run("admin.js", {"action": "pause", "queue": "held"}, redis_url=redis_url)
    assert paused["isPaused"] is True
    # v5: pause RENAMEs wait to paused and sets meta.paused.
    assert client.exists("bull:held:wait") == 0
    assert client.lrange("bull:held:paused", 0, -1) == ["h-2", "h-1", "h-0"]
    assert client.hget("bull:held:meta", "paused") == "1"
    [counts] = node.run("counts.js", {"queue": "held"}, redis_url=redis_url)
    assert (counts["counts"]["paused"], counts["counts"]["waiting"]) == (3, 0)
    assert counts["isPaused"] is True

    [resumed] = node.run("admin.js", {"action": "resume", "queue": "held"}, redis_url=redis_url)
    assert resumed["isPaused"] is False
    assert client.exists("bull:held:paused") == 0
    assert client.llen("bull:held:wait") == 3
    [states] = node.run(
        "admin.js", {"action": "states", "queue": "held", "ids": ["h-0", "x"]}, redis_url=redis_url
    )
    assert states["states"] == {"h-0": "waiting", "x": "unknown"}
