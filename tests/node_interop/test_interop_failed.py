"""`queues failed` and `queues retry-failed` against real Node BullMQ v5 workers whose
jobs failed for real: Redis ran out of memory while they ran (their progress write was
refused with Redis' own OOM error), and other jobs failed for an application reason
(their processor threw). The groups show both causes; retrying the Redis-caused ones
runs each of them to completion exactly once and leaves the application failures
failed."""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path

from redis_runbook.lab.server import RedisServer
from tests.support.cli import run_cli, target_env
from tests.support.node import Event, NodeLauncher, Predicate
from tests.support.servers import RedisFactory, plain_client

OOM = "OOM command not allowed when used memory > 'maxmemory'"
APP = "card declined for customer 4711"
CLOSED = "Connection is closed."
REDIS_JOBS = [f"report-{i}" for i in range(8)]
APP_JOBS = [f"charge-{i}" for i in range(4)]


def is_event(name: str, ids: list[str], reason: str = "") -> Predicate:
    """A worker line: `name` for one of `ids`, its failedReason containing `reason`."""

    def match(event: Event) -> bool:
        return (
            event.get("event") == name
            and event.get("jobId") in ids
            and reason in str(event.get("failedReason") or "")
        )

    return match


def test_jobs_failed_by_an_out_of_memory_redis_are_retried_and_complete_once(
    tmp_path: Path, node: NodeLauncher, redis_server: RedisServer
) -> None:
    at = redis_server.target().url
    node.run("producer.js", {"queue": "reports", "count": len(REDIS_JOBS), "name": "sync-report",
                             "jobIdPrefix": "report-", "data": {"oomDrill": True}},
             redis_url=at)  # fmt: skip
    node.run("producer.js", {"queue": "reports", "count": len(APP_JOBS), "name": "charge-card",
                             "jobIdPrefix": "charge-", "data": {"fail": True}},
             redis_url=at)  # fmt: skip
    worker = node("worker.js", {"queue": "reports", "concurrency": 16, "failMessage": APP},
                  redis_url=at)  # fmt: skip
    worker.wait_ready()
    worker.wait_count(is_event("failed", APP_JOBS, APP), len(APP_JOBS), 60, what="app failures")
    worker.wait_count(is_event("active", REDIS_JOBS), len(REDIS_JOBS), 60, what="reports active")

    client = plain_client(redis_server)
    maxmemory = client.config_get("maxmemory")["maxmemory"]
    client.config_set("maxmemory", "1")  # out of memory: every denied write is refused
    try:
        worker.wait_count(is_event("failed", REDIS_JOBS, OOM), len(REDIS_JOBS), 60,
                          what="reports failed by OOM")  # fmt: skip
    finally:
        client.config_set("maxmemory", maxmemory)
    assert client.zcard("bull:reports:failed") == len(REDIS_JOBS) + len(APP_JOBS)
    app_reasons = {i: client.hget(f"bull:reports:{i}", "failedReason") for i in APP_JOBS}

    env = target_env(tmp_path, redis_server)
    shown = run_cli("--json", "queues", "failed", env=env)
    assert shown.returncode == 0, shown.stderr
    (queue,) = json.loads(shown.stdout)["queues"]
    groups = {g["reason"]: g for g in queue["groups"]}
    assert (queue["queue"], queue["failed"]) == ("reports", 12)
    # The script sha and line number in Redis' message are folded: one cause, one group.
    (oom,) = [g for g in groups.values() if g["reason"].startswith(OOM)]
    assert (oom["count"], oom["names"]) == (8, {"sync-report": 8})
    assert "<hex>" in oom["reason"]
    assert OOM in oom["example"]
    assert oom["first_failed_ms"] <= oom["last_failed_ms"]
    app = groups["card declined for customer <n>"]
    assert (app["count"], app["names"]) == (4, {"charge-card": 4})

    retried = run_cli("--yes", "queues", "retry-failed", "--reason", "^OOM command not allowed",
                      env=env)  # fmt: skip
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert "8 x " in retried.stdout

    # The worker still running picks them up (the marker wakes it) and completes each.
    worker.wait_count(is_event("completed", REDIS_JOBS), len(REDIS_JOBS), 60,
                      what="retried reports completed")  # fmt: skip
    worker.terminate()
    runs = Counter(e["jobId"] for e in worker.events if e.get("event") == "completed")
    assert runs == Counter({i: 1 for i in REDIS_JOBS})  # exactly once, nothing else ran
    assert {str(i) for i in client.zrange("bull:reports:completed", 0, -1)} == set(REDIS_JOBS)
    assert {str(i) for i in client.zrange("bull:reports:failed", 0, -1)} == set(APP_JOBS)
    assert {i: client.hget(f"bull:reports:{i}", "failedReason") for i in APP_JOBS} == app_reasons
    # attemptsMade kept by the retry (1, the OOM failure) plus the run that completed.
    assert {client.hget(f"bull:reports:{i}", "atm") for i in REDIS_JOBS} == {"2"}


def test_jobs_failed_by_a_killed_redis_are_retried_and_complete_once(
    tmp_path: Path, node: NodeLauncher, redis_factory: RedisFactory
) -> None:
    """Redis killed (-9) while jobs run: the processors' own connections fail with the
    client's "Connection is closed.", the workers record the failures once Redis is
    back from its AOF; a fresh worker completes each retried job exactly once."""
    server = redis_factory()
    at = server.target().url
    node.run("producer.js", {"queue": "sync", "count": len(REDIS_JOBS), "name": "sync-crm",
                             "jobIdPrefix": "report-", "data": {"killDrill": True}},
             redis_url=at)  # fmt: skip
    node.run("producer.js", {"queue": "sync", "count": len(APP_JOBS), "name": "charge-card",
                             "jobIdPrefix": "charge-", "data": {"fail": True}},
             redis_url=at)  # fmt: skip
    first = node("worker.js", {"queue": "sync", "concurrency": 16, "failMessage": APP},
                 redis_url=at)  # fmt: skip
    first.wait_ready()
    first.wait_count(is_event("failed", APP_JOBS, APP), len(APP_JOBS), 60, what="app failures")
    first.wait_count(is_event("pinging", REDIS_JOBS), len(REDIS_JOBS), 60, what="jobs running")
    server.kill(signal.SIGKILL)
    server.start()  # back from its AOF; the worker reconnects and records the failures
    first.wait_count(is_event("failed", REDIS_JOBS, CLOSED), len(REDIS_JOBS), 120,
                     what="jobs failed by the kill")  # fmt: skip
    first.terminate()
    client = plain_client(server)
    assert client.zcard("bull:sync:failed") == len(REDIS_JOBS) + len(APP_JOBS)

    env = target_env(tmp_path, server)
    shown = run_cli("--json", "queues", "failed", "--since", "1h", env=env)
    assert shown.returncode == 0, shown.stderr
    (queue,) = json.loads(shown.stdout)["queues"]
    counts = {g["reason"]: (g["count"], g["names"]) for g in queue["groups"]}
    assert counts == {
        CLOSED: (8, {"sync-crm": 8}),
        "card declined for customer <n>": (4, {"charge-card": 4}),
    }

    dry = run_cli("--dry-run", "queues", "retry-failed", "--reason", "Connection is closed",
                  env=env)  # fmt: skip
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert f"sync: 8 x {CLOSED!r} (names: sync-crm 8)" in dry.stdout
    assert client.zcard("bull:sync:failed") == 12
    retried = run_cli("--yes", "queues", "retry-failed", "--reason", "Connection is closed",
                      env=env)  # fmt: skip
    assert retried.returncode == 0, retried.stdout + retried.stderr

    fresh = node("worker.js", {"queue": "sync", "concurrency": 4}, redis_url=at)
    fresh.wait_ready()
    fresh.wait_count(is_event("completed", REDIS_JOBS), len(REDIS_JOBS), 60,
                     what="retried jobs completed")  # fmt: skip
    fresh.terminate()
    runs = Counter(e["jobId"] for e in fresh.events if e.get("event") in ("completed", "failed"))
    assert runs == Counter({i: 1 for i in REDIS_JOBS})  # exactly once; app jobs not run
    assert {str(i) for i in client.zrange("bull:sync:failed", 0, -1)} == set(APP_JOBS)
