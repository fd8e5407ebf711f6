"""`workers verify` against real Node BullMQ v5 workers: consuming, none, wedged
(connected, its job's lock lost and nothing moving), paused; a busy worker is busy,
not wedged; a failed canary is reported as failed; passive evidence spares the
canary; limited queues are not jumped without saying so."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

from redis_runbook.lab.server import RedisServer
from tests.support.cli import run_cli, target_env
from tests.support.node import NodeLauncher
from tests.support.servers import plain_client
from tests.support.waiting import wait_until


def verify(env: dict[str, str], *extra: str) -> tuple[int, dict[str, dict[str, Any]]]:
    result = run_cli("--json", "workers", "verify", "--timeout", "3", "--sample", "0.5",
                     *extra, env=env)  # fmt: skip
    assert result.stdout, result.stderr
    document = json.loads(result.stdout)
    return result.returncode, {q["queue"]: q for q in document["queues"]}


def canary_events(server: RedisServer, queue: str) -> list[dict[str, str]]:
    """The events a canary left in the queue's stream."""
    entries: Any = plain_client(server).xrange(f"bull:{queue}:events")
    return [f for _, f in entries if str(f.get("jobId", "")).startswith("canary-")]


def test_verdicts_for_consuming_absent_wedged_and_paused_workers(
    tmp_path: Path, node: NodeLauncher, redis_server: RedisServer
) -> None:
    at = redis_server.target().url
    for queue in ("live", "orphaned", "stuck", "held"):
        node.run("producer.js", {"queue": queue, "count": 2, "jobIdPrefix": f"{queue}-",
                                 "data": {"delayMs": 60_000 if queue == "stuck" else 0}},
                 redis_url=at)  # fmt: skip
    live = node("worker.js", {"queue": "live"}, redis_url=at)
    live.wait_count(lambda e: e.get("event") == "completed", 2, 30)  # then idle: a canary
    # Wedged for real: connected (the socket stays open) but frozen, so its lock runs out.
    frozen = node("worker.js", {"queue": "stuck", "concurrency": 1, "lockDuration": 1000},
                  redis_url=at)  # fmt: skip
    frozen.wait_event("active", 10)
    os.kill(frozen.pid, signal.SIGSTOP)
    client = plain_client(redis_server)
    wait_until(lambda: client.pttl("bull:stuck:stuck-0:lock") == -2, "the frozen lock expires")
    node.run("admin.js", {"action": "pause", "queue": "held"}, redis_url=at)

    code, queues = verify(target_env(tmp_path, redis_server))
    assert queues["live"]["verdict"] == "processing"
    assert queues["live"]["canary_ms"] is not None
    assert queues["orphaned"]["verdict"] == "no-workers"
    assert queues["orphaned"]["workers"] == 0
    assert queues["orphaned"]["canary"]["outcome"] == "timeout"
    assert queues["orphaned"]["canary"]["removed"] is True
    assert queues["stuck"]["verdict"] == "wedged"  # connected, its lock lost, nothing moved
    assert queues["stuck"]["workers"] == 1
    assert queues["held"]["verdict"] == "cannot-verify"
    assert code == 2
    leftovers = [k for k in client.scan_iter("bull:*:canary-*") if not k.endswith(":logs")]
    assert leftovers == []  # canaries that timed out were removed
    assert client.llen("bull:orphaned:wait") == 2  # the real jobs are untouched

    code, queues = verify(target_env(tmp_path, redis_server), "--queue", "live", "--passive")
    assert code == 0
    assert queues["live"]["canary_ms"] is None
    live.terminate()
    frozen.kill()


def test_a_busy_worker_is_busy_not_wedged(
    tmp_path: Path, node: NodeLauncher, redis_server: RedisServer
) -> None:
    """Every slot holds a job longer than the canary timeout: its locks are renewed,
    so the worker is alive and busy (exit 0), with or without a canary."""
    at = redis_server.target().url
    node.run("producer.js", {"queue": "long", "count": 3, "jobIdPrefix": "long-",
                             "data": {"delayMs": 120_000}}, redis_url=at)  # fmt: skip
    busy = node("worker.js", {"queue": "long", "concurrency": 1, "lockDuration": 4000},
                redis_url=at)  # fmt: skip
    busy.wait_event("active", 10)
    env = target_env(tmp_path, redis_server)

    code, queues = verify(env)
    assert (queues["long"]["verdict"], code) == ("busy", 0), queues
    assert queues["long"]["canary"]["sent"] is False  # the locks proved it: no canary
    assert any("renewed" in e for e in queues["long"]["evidence"])
    assert canary_events(redis_server, "long") == []

    code, queues = verify(env, "--canary")  # a canary anyway: it waits behind the busy slot
    assert (queues["long"]["verdict"], code) == ("busy", 0), queues
    assert queues["long"]["canary"]["outcome"] == "timeout"
    assert queues["long"]["canary_ms"] is None
    busy.kill()


def test_a_failed_canary_is_reported_as_failed_with_its_cost(
    tmp_path: Path, node: NodeLauncher, redis_server: RedisServer
) -> None:
    """A processor that throws on names it does not know fails the canary: reported
    as such (exit 1) with what it cost, not as "processing"."""
    at = redis_server.target().url
    strict = node("worker.js", {"queue": "strict", "failPattern": "^canary-",
                                "failMessage": "unknown job name"}, redis_url=at)  # fmt: skip
    strict.wait_ready()
    node.run("producer.js", {"queue": "strict", "count": 1, "jobIdPrefix": "s-"}, redis_url=at)
    strict.wait_event("completed", 10, jobId="s-0")

    code, queues = verify(target_env(tmp_path, redis_server))
    verdict = queues["strict"]
    assert (verdict["verdict"], code) == ("canary-failed", 1), verdict
    assert verdict["canary"]["outcome"] == "failed"
    assert verdict["canary"]["failed_reason"] == "unknown job name"
    cost = verdict["canary"]["cost"]
    assert "your processor ran" in cost, cost
    assert "failed" in cost, cost
    assert "retries-exhausted" in cost, cost
    assert {"failed", "retries-exhausted"} <= {
        e["event"] for e in canary_events(redis_server, "strict")
    }
    strict.terminate()


def test_passive_evidence_spares_the_canary(
    tmp_path: Path, node: NodeLauncher, redis_server: RedisServer
) -> None:
    at = redis_server.target().url
    node.run("producer.js", {"queue": "steady", "count": 600, "jobIdPrefix": "st-",
                             "data": {"delayMs": 100}}, redis_url=at)  # fmt: skip
    steady = node("worker.js", {"queue": "steady", "concurrency": 1}, redis_url=at)
    steady.wait_count(lambda e: e.get("event") == "completed", 3, 30)

    code, queues = verify(target_env(tmp_path, redis_server))
    assert (queues["steady"]["verdict"], code) == ("processing", 0), queues
    assert queues["steady"]["canary"]["sent"] is False
    assert canary_events(redis_server, "steady") == []
    steady.kill()


def test_limited_queues_are_not_jumped_without_saying_so(
    tmp_path: Path, node: NodeLauncher, redis_server: RedisServer
) -> None:
    at = redis_server.target().url
    node.run("limits.js", {"queue": "metered", "rateLimit": {"max": 1, "duration": 60_000}},
             redis_url=at)  # fmt: skip
    node.run("limits.js", {"queue": "single", "concurrency": 1}, redis_url=at)
    workers = [node("worker.js", {"queue": q}, redis_url=at) for q in ("metered", "single")]
    for w in workers:
        w.wait_ready()
    env = target_env(tmp_path, redis_server)

    code, queues = verify(env)
    for name, limit in (("metered", "rate limit 1 per 60000 ms"), ("single", "concurrency 1")):
        verdict = queues[name]
        assert verdict["canary"]["sent"] is False, verdict
        assert limit in verdict["canary"]["skipped"], verdict
        assert "--canary" in verdict["canary"]["skipped"], verdict
        assert verdict["verdict"] == "cannot-verify"
        assert canary_events(redis_server, name) == []
    assert code == 1

    code, queues = verify(env, "--canary")
    assert code == 0, queues
    for name, limit in (("metered", "rate limit 1 per 60000 ms"), ("single", "concurrency 1")):
        verdict = queues[name]
        assert verdict["verdict"] == "processing", verdict
        said = " ".join(verdict["evidence"])
        assert f"the canary jumped 0 waiting job(s) of a queue with a global {limit}" in said
    for w in workers:
        w.terminate()
