"""`queues pause|resume` against real Node BullMQ v5 producers, workers and a
QueueEvents listener: paused, Node workers take nothing a Node producer adds; resumed,
they run all of it; a queue an operator paused with Node's queue.pause() stays paused
after `resume --all`; Node sees the `paused` and `resumed` events it would see from
queue.pause() / resume()."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from redis_runbook.lab.server import RedisServer
from tests.support.cli import run_cli, target_env
from tests.support.node import NodeLauncher, NodeProcess
from tests.support.servers import plain_client


def url(server: RedisServer) -> str:
    return server.target().url


def worker(node: NodeLauncher, server: RedisServer, queue: str, **options: Any) -> NodeProcess:
    proc = node("worker.js", {"queue": queue, **options}, redis_url=url(server))
    proc.wait_ready()
    return proc


def took(proc: NodeProcess, prefix: str) -> list[str]:
    """The ids (starting with `prefix`) the worker made active so far."""
    return [str(e["jobId"]) for e in proc.poll()
            if e.get("event") == "active" and str(e["jobId"]).startswith(prefix)]  # fmt: skip


def done(prefix: str) -> Any:
    return lambda e: e.get("event") == "completed" and str(e.get("jobId")).startswith(prefix)


def test_paused_queues_hold_node_jobs_until_resume_and_an_operator_pause_holds(
    tmp_path: Path, node: NodeLauncher, redis_server: RedisServer
) -> None:
    at, client = url(redis_server), plain_client(redis_server)
    env = target_env(tmp_path, redis_server)
    node.run("producer.js", {"queue": "work", "count": 3, "jobIdPrefix": "before-"}, redis_url=at)
    node.run("producer.js", {"queue": "held", "count": 2, "jobIdPrefix": "held-"}, redis_url=at)
    node.run("admin.js", {"action": "pause", "queue": "held"}, redis_url=at)  # the operator's
    work, held = worker(node, redis_server, "work"), worker(node, redis_server, "held")
    # A queue under a prefix the tool is not configured for: never paused by --all, its
    # worker's completions are the "later" events that the paused queue is waited past.
    side = worker(node, redis_server, "other", prefix="side")
    work.wait_count(done("before-"), 3, 60, what="3 completions before the pause")
    last = client.xrevrange("bull:work:events", count=1)[0][0]
    listener = node("queueevents.js", {"queue": "work", "lastEventId": last}, redis_url=at)
    listener.wait_ready(20)

    paused = run_cli("--yes", "queues", "pause", "--all", env=env)
    assert paused.returncode == 0, paused.stdout + paused.stderr
    assert "held: already paused (not by redis-runbook), left as it is" in paused.stdout
    listener.wait_event("paused", 30)
    node.run("producer.js", {"queue": "work", "count": 10, "jobIdPrefix": "during-"}, redis_url=at)
    node.run("producer.js", {"queue": "other", "prefix": "side", "count": 1,
                             "jobIdPrefix": "side-"}, redis_url=at)  # fmt: skip
    side.wait_event("completed", 60, jobId="side-0")
    # Added before side-0, and still nothing taken: the jobs wait in the paused list.
    assert took(work, "during-") == []
    assert [client.llen(f"bull:work:{k}") for k in ("paused", "wait", "active")] == [10, 0, 0]
    (counts,) = node.run("counts.js", {"queues": ["work"]}, redis_url=at)
    assert counts["isPaused"]
    assert counts["counts"]["paused"] == 10

    resumed = run_cli("--yes", "queues", "resume", "--all", env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "held: paused, not by redis-runbook: left paused" in resumed.stdout
    listener.wait_event("resumed", 30)
    finished = work.wait_count(done("during-"), 10, 120, what="10 completions after resume")
    assert sorted(e["jobId"] for e in finished) == sorted(f"during-{i}" for i in range(10))
    # The operator's pause holds, after the resumed queue's jobs all ran.
    assert took(held, "held-") == []
    assert client.hget("bull:held:meta", "paused") == "1"
    assert client.llen("bull:held:paused") == 2
    for proc in (work, held, side, listener):
        proc.terminate()
