"""`queues recover-stale` under live traffic from real Node BullMQ v5 workers (issue 12,
items 1, 2 and 4): no stale job is skipped while workers push at the head of `active`
and remove finished jobs from it, and the run fails rather than say done while one is
left; `--count-as-stall` applies BullMQ's stall limit (`defa`, then the worker fails
the job) with `max_stalled_count` per queue from the config; a QueueEvents listener
sees every `waiting` event even with a small `maxLenEvents`."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from redis_runbook.bullmq.keys import QueueRef
from redis_runbook.bullmq.stale import CallResult, recover_call, recover_pass, survey
from redis_runbook.config import load_config
from redis_runbook.lab.server import RedisServer
from redis_runbook.procedures.context import ProcedureContext
from redis_runbook.procedures.engine import StepFailed
from redis_runbook.procedures.stale import Options, plan_recover_stale
from tests.support.cli import run_cli, target_env
from tests.support.node import NodeLauncher, NodeProcess
from tests.support.servers import plain_client
from tests.support.waiting import wait_until

# Read-only and atomic: the ids in `active` whose job exists and whose lock does not.
STALE_IN_ACTIVE = """
local out = {}
for _, id in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if redis.call('EXISTS', ARGV[1] .. id .. ':lock') == 0
     and redis.call('EXISTS', ARGV[1] .. id) == 1 then out[#out + 1] = id end
end
return out
"""


def url(server: RedisServer) -> str:
    return server.target().url


def stale_in_active(client: redis.Redis, queue: str) -> list[str]:
    reply: Any = client.eval(STALE_IN_ACTIVE, 1, f"bull:{queue}:active", f"bull:{queue}:")
    return [str(i) for i in reply]


def make_stale(
    node: NodeLauncher, server: RedisServer, queue: str, count: int, id_prefix: str
) -> list[str]:
    """`count` jobs taken by a Node worker that is then killed (kill -9): they stay in
    `active` and their 1 s locks run out. Returns their ids."""
    client = plain_client(server)
    node.run(
        "producer.js",
        {"queue": queue, "count": count, "jobIdPrefix": id_prefix, "chunk": 1000},
        redis_url=url(server),
        timeout=60,
    )
    dying = node(
        "worker.js",
        {"queue": queue, "concurrency": count, "lockDuration": 1000, "delayMs": 600_000,
         "skipStalledCheck": True},
        redis_url=url(server),
    )  # fmt: skip
    dying.wait_count(lambda e: e.get("event") == "active", count, 90, what=f"{count} active")
    dying.kill()
    ids = [f"{id_prefix}{i}" for i in range(count)]
    wait_until(lambda: len(stale_in_active(client, queue)) == count, f"{count} locks to expire", 30)
    return ids


def traffic(node: NodeLauncher, server: RedisServer, queue: str, **options: Any) -> NodeProcess:
    proc = node("traffic.js", {"queue": queue, **options}, redis_url=url(server))
    proc.wait_ready(30)
    return proc


def test_no_stale_job_is_skipped_under_live_traffic(
    tmp_path: Path, node: NodeLauncher, redis_server: RedisServer
) -> None:
    """Issue 12 item 1: 3,000 stale jobs, live workers at concurrency 2,000 finishing jobs
    every few ms and fetching new ones in front of them. The plan counts exactly the
    stale jobs (the old head-first LRANGE paging counted 3,058-3,226, reading a live job
    that finished meanwhile as one without a lock), and after an exit 0 not one job
    without a lock is left in `active` (the old paging left 17 in bench_stale_live)."""
    client = plain_client(redis_server)
    stale = make_stale(node, redis_server, "busy", 3000, "dead-")
    live = traffic(
        node,
        redis_server,
        "busy",
        concurrency=2000,
        minMs=20,
        maxMs=300,
        batch=1000,
        tickMs=100,
        maxBacklog=80000,
    )
    wait_until(lambda: client.llen("bull:busy:active") > 3200, "live jobs in active", 30)
    env = target_env(tmp_path, redis_server)

    dry = run_cli("--dry-run", "queues", "recover-stale", env=env)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "busy: 3000 stale" in dry.stdout, dry.stdout

    result = run_cli("--yes", "queues", "recover-stale", env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert stale_in_active(client, "busy") == []
    # Every recovered job ran (the live workers took them from the head of the queue).
    wait_until(
        lambda: all(s is not None for s in _scores(client, "bull:busy:completed", stale)),
        "the 3000 recovered jobs to complete",
        90,
    )
    assert live.matching(lambda e: e.get("event") == "error") == []
    live.terminate()


def _scores(client: redis.Redis, key: str, ids: list[str]) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.zscore(key, job_id)
    return pipe.execute()


def test_last_step_recounts_and_fails_while_a_stale_job_is_left(
    tmp_path: Path, redis_server: RedisServer, node: NodeLauncher
) -> None:
    """Issue 12 item 1: the plan ends with a re-count; a job that is stale when it runs
    (here: one made stale after the move) fails it — never 'done' with one left."""
    client = plain_client(redis_server)
    make_stale(node, redis_server, "late", 5, "late-")
    node.run("producer.js", {"queue": "late", "count": 1, "jobIdPrefix": "later-"},
             redis_url=url(redis_server))  # fmt: skip
    env = target_env(tmp_path, redis_server)
    config = load_config(Path(env["REDIS_RUNBOOK_CONFIG"]), env={}).config
    config.runbook.state_dir = tmp_path / "state"
    plan = plan_recover_stale(ProcedureContext(config), [QueueRef("bull", "late")], Options())
    *moves, recount = plan.steps
    assert "re-count" in recount.title
    for step in moves:
        step.action()
    assert stale_in_active(client, "late") == []
    # A worker takes `later-0` and dies between the move and the re-count.
    assert client.lrem("bull:late:wait", 1, "later-0") == 1
    client.lpush("bull:late:active", "later-0")
    assert stale_in_active(client, "late") == ["later-0"]
    with pytest.raises(StepFailed, match=r"late: 1 stale job\(s\) still in active \(later-0\)"):
        recount.action()


def _is_stale(client: redis.Redis, queue: str, job_id: str) -> Callable[[], bool]:
    return lambda: stale_in_active(client, queue) == [job_id]


def test_count_as_stall_fails_jobs_over_the_stall_limit(
    tmp_path: Path, node: NodeLauncher, redis_server: RedisServer
) -> None:
    """Issue 12 item 2: a job that kills its worker every time. BullMQ's own checker
    marks it `defa` on stall number maxStalledCount+1 and the next worker fails it;
    `--count-as-stall` does the same, with maxStalledCount per queue from the config
    (default 1, BullMQ's), and the plan says how many jobs will be failed."""
    client = plain_client(redis_server)
    at = url(redis_server)
    env = target_env(
        tmp_path, redis_server, {"bullmq": {"max_stalled_count_per_queue": {"patient": 2}}}
    )
    for queue in ("crashy", "patient"):
        node.run("producer.js", {"queue": queue, "count": 1, "jobIdPrefix": "boom-",
                                 "opts": {"attempts": 5}}, redis_url=at)  # fmt: skip
    for stall in (1, 2):
        for queue in ("crashy", "patient"):
            dying = node(
                "worker.js",
                {"queue": queue, "lockDuration": 1000, "delayMs": 600_000,
                 "skipStalledCheck": True},
                redis_url=at,
            )  # fmt: skip
            dying.wait_event("active", 20, jobId="boom-0")
            dying.kill()
            wait_until(_is_stale(client, queue, "boom-0"), "the lock to expire")
        dry = run_cli("--dry-run", "queues", "recover-stale", "--count-as-stall", env=env)
        assert dry.returncode == 0, dry.stdout + dry.stderr
        failing = 1 if stall == 2 else 0
        assert re.search(
            rf"crashy: 1 stale, .*{failing} to be failed by the next worker "
            r"\(stalled more than max_stalled_count 1\)",
            dry.stdout,
        ), dry.stdout
        assert "patient: 1 stale" in dry.stdout
        assert re.search(r"patient: .*0 to be failed .*max_stalled_count 2\)", dry.stdout)
        result = run_cli("--yes", "queues", "recover-stale", "--count-as-stall", env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        for queue in ("crashy", "patient"):
            assert client.hget(f"bull:{queue}:boom-0", "stc") == str(stall)
    assert client.hget("bull:crashy:boom-0", "defa") == "job stalled more than allowable limit"
    assert client.hget("bull:patient:boom-0", "defa") is None

    # The next worker fails the marked job at once (attempts left or not), as it does after
    # BullMQ's own stalled check; the other queue's job runs.
    for queue in ("crashy", "patient"):
        runner = node("worker.js", {"queue": queue}, redis_url=at)
        done = runner.wait_for(
            lambda e: e.get("event") in ("completed", "failed") and e.get("jobId") == "boom-0",
            30,
            what="boom-0 finished",
        )
        if queue == "crashy":
            assert done["event"] == "failed"
            assert done["failedReason"] == "job stalled more than allowable limit"
            assert client.zscore("bull:crashy:failed", "boom-0") is not None
        else:
            assert done["event"] == "completed"
        runner.terminate()


def test_count_as_stall_never_fails_a_job_schedulers_job(
    tmp_path: Path, node: NodeLauncher, redis_server: RedisServer
) -> None:
    """Issue 12 item 2, BullMQ's exception: a job of a job scheduler (`rjk` naming a
    scheduler that exists) is re-queued however often it stalls, never marked to fail."""
    client = plain_client(redis_server)
    at = url(redis_server)
    [made] = node.run("scheduler.js", {"queue": "ticks", "id": "hourly"}, redis_url=at)
    job_id = str(made["jobId"])
    assert client.hget(f"bull:ticks:{job_id}", "rjk") == "hourly"
    env = target_env(tmp_path, redis_server, {"bullmq": {"max_stalled_count": 0}})
    dying = node(
        "worker.js",
        {"queue": "ticks", "lockDuration": 1000, "delayMs": 600_000, "skipStalledCheck": True},
        redis_url=at,
    )
    dying.wait_event("active", 20, jobId=job_id)
    dying.kill()
    wait_until(_is_stale(client, "ticks", job_id), "the lock to expire")
    dry = run_cli("--dry-run", "queues", "recover-stale", "--count-as-stall", env=env)
    assert "ticks: 1 stale, 0 locked, 0 immortal lock(s), 0 orphan id(s); 0 to be failed" in (
        dry.stdout
    ), dry.stdout
    result = run_cli("--yes", "queues", "recover-stale", "--count-as-stall", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert client.hget(f"bull:ticks:{job_id}", "stc") == "1"  # over max_stalled_count 0
    assert client.hget(f"bull:ticks:{job_id}", "defa") is None
    assert job_id in client.lrange("bull:ticks:wait", 0, -1)


def test_bad_max_stalled_count_is_a_config_error(tmp_path: Path, redis_server: RedisServer) -> None:
    env = target_env(tmp_path, redis_server, {"bullmq": {"max_stalled_count_per_queue": {"q": -1}}})
    result = run_cli("config", "validate", env=env)
    assert result.returncode == 2
    assert "max_stalled_count_per_queue" in result.stderr + result.stdout


def test_waiting_events_survive_a_small_max_len_events(
    tmp_path: Path, node: NodeLauncher, redis_server: RedisServer
) -> None:
    """Issue 12 item 4: with `opts.maxLenEvents` 50 a QueueEvents listener must see every
    `waiting` (and `stalled`) event of the move: the stream is trimmed once, before the
    script emits, as BullMQ does — not by `MAXLEN ~` on every XADD."""
    client = plain_client(redis_server)
    ids = make_stale(node, redis_server, "chatty", 300, "c-")
    client.hset("bull:chatty:meta", "opts.maxLenEvents", "50")
    last = client.xrevrange("bull:chatty:events", count=1)
    listener = node(
        "queueevents.js",
        {"queue": "chatty", "lastEventId": last[0][0]},
        redis_url=url(redis_server),
    )
    listener.wait_ready(20)
    env = target_env(tmp_path, redis_server)
    result = run_cli("--yes", "queues", "recover-stale", "--count-as-stall", env=env)
    assert result.returncode == 0, result.stdout + result.stderr

    waiting = listener.wait_count(
        lambda e: e.get("event") == "waiting" and e.get("prev") == "active",
        300,
        30,
        what="300 waiting events",
    )
    assert sorted(e["jobId"] for e in waiting) == sorted(ids)
    stalled = listener.wait_count(lambda e: e.get("event") == "stalled", 300, 30)
    assert sorted(e["jobId"] for e in stalled) == sorted(ids)
    # Trimmed before the move: what is left of the older events is about maxLenEvents.
    assert client.xlen("bull:chatty:events") < 600 + 200
    listener.terminate()


def test_each_call_stops_at_its_time_budget_and_the_walk_still_moves_every_job(
    node: NodeLauncher, redis_server: RedisServer
) -> None:
    """Issue 12 item 3: a script call does a bounded amount of work — at most `batch` ids,
    and it stops early once it has run `budget_ms` (checked every 32 ids; 0 here, so
    every call stops at 31) — and the walk carries on in the next call until every id
    that was in active has been seen. Work per id is O(1) (RPOP or a rotation, no LREM
    scan), so the budget holds however long the list is."""
    client = plain_client(redis_server)
    stale = make_stale(node, redis_server, "slow", 200, "s-")
    queue = QueueRef("bull", "slow")
    first = recover_call(client, queue, 500, budget_ms=0)
    assert (first.examined, first.moved, first.timed_out) == (31, 31, True)

    calls: list[CallResult] = []
    result = recover_pass(client, queue, on_call=lambda _r, call, _ms: calls.append(call))
    assert result.moved == 200 - 31
    assert not calls[-1].timed_out
    assert stale_in_active(client, "slow") == []
    waiting: Any = client.lrange("bull:slow:wait", 0, -1)
    assert sorted(waiting) == sorted(stale)


def test_survey_reads_each_id_once_while_live_jobs_leave_the_part_already_read(
    node: NodeLauncher, redis_server: RedisServer
) -> None:
    """Issue 12 item 1, the read-only survey: live jobs sit at the tail of `active` (the
    end it reads from) and finish all the time, stale ones sit in front of them, and the
    survey walks in small chunks re-reading 1 id of the last (overlap 1, default 200), so
    ids leave the part already read between its calls all the time (it looks further
    back, or starts again from the tail). Its stale set is exactly the jobs the dead
    worker held, every time."""
    client = plain_client(redis_server)
    live = traffic(node, redis_server, "mixed", concurrency=1000, minMs=50, maxMs=500,
                   batch=500, tickMs=50, maxBacklog=3000)  # fmt: skip
    wait_until(lambda: client.llen("bull:mixed:active") >= 900, "live jobs in active", 30)
    dying = node(
        "worker.js",
        {"queue": "mixed", "concurrency": 1500, "lockDuration": 1000, "delayMs": 600_000,
         "skipStalledCheck": True},
        redis_url=url(redis_server),
    )  # fmt: skip
    held = dying.wait_count(lambda e: e.get("event") == "active", 1500, 90, what="1500 active")
    dying.kill()
    dead = sorted(str(e["jobId"]) for e in held)
    wait_until(lambda: sorted(stale_in_active(client, "mixed")) == dead, "locks to expire", 30)
    queue = QueueRef("bull", "mixed")
    for _ in range(3):
        found = survey(client, queue, chunk=100, overlap=1, max_rounds=100_000)
        assert found.complete
        assert sorted(found.stale) == dead
        assert len(set(found.stale)) == len(found.stale)
    assert live.matching(lambda e: e.get("event") == "error") == []
    live.terminate()
