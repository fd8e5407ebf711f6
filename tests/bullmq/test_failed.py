"""`queues failed` and `queues retry-failed` on jobs failed by the official Python
bullmq 2.x worker (the Node v5 scripts, byte-identical): grouping and paging, BullMQ's
retry semantics (paused queue, priority, lifo, marker, `waiting` events, attemptsMade),
filters, bounded script calls, a replica (read-only / refused) and bad input (one line,
exit 2, nothing changed)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis
from bullmq import Queue, Worker

from redis_runbook.bullmq.failed import PAGE, normalise, read_failed
from redis_runbook.bullmq.keys import QueueRef
from redis_runbook.journal import Journal
from redis_runbook.lab.server import RedisServer
from tests.support.cli import run_cli, target_env
from tests.support.servers import RedisFactory, info, plain_client
from tests.support.waiting import wait_until

WRITE_COMMANDS = (
    "eval", "evalsha", "fcall", "set", "lpush", "rpush", "lrem", "del", "unlink", "zadd",
    "zrem", "hset", "hdel", "hincrby", "xadd", "xtrim", "rename", "expire", "pexpire",
    "rpoplpush", "lmove", "incr",
)  # fmt: skip
CLOSED = "Connection is closed."
#: (job id, name, reason, opts)
Spec = tuple[str, str, str, Mapping[str, Any]]


async def _fail(server: RedisServer, queue: str, jobs: list[dict[str, Any]], pause: bool) -> None:
    conn = {"host": "127.0.0.1", "port": server.port}
    q = Queue(queue, {"connection": conn})
    await q.addBulk(jobs)

    async def processor(job: Any, _token: str) -> None:
        raise RuntimeError(job.data["reason"])

    worker = Worker(queue, processor, {"connection": conn, "concurrency": 10})
    deadline = asyncio.get_running_loop().time() + 60
    while await q.getFailedCount() < len(jobs):
        assert asyncio.get_running_loop().time() < deadline, "jobs failing"
        await asyncio.sleep(0.05)
    await worker.close()
    if pause:
        await q.pause()
    await q.close()


def fail_jobs(server: RedisServer, queue: str, specs: Sequence[Spec],
              pause: bool = False) -> None:  # fmt: skip
    """(job id, name, reason, opts) per job: added, then failed by a real bullmq worker
    whose processor raises `reason`; then the queue paused (v5) when asked."""
    jobs = [{"name": name, "data": {"reason": reason}, "opts": {"jobId": job_id, **opts}}
            for job_id, name, reason, opts in specs]  # fmt: skip
    asyncio.run(_fail(server, queue, jobs, pause))


def snapshot(client: redis.Redis) -> dict[str, Any]:
    """Every key's type and content (not DUMP: a hash's field order may differ after a
    replica's full sync without anything having changed)."""
    readers: dict[str, Any] = {
        "string": client.get, "hash": client.hgetall, "set": client.smembers,
        "list": lambda k: client.lrange(k, 0, -1),
        "zset": lambda k: client.zrange(k, 0, -1, withscores=True),
        "stream": lambda k: client.xrange(k),
    }  # fmt: skip
    return {k: (t, readers[t](k)) for k in client.scan_iter() if (t := client.type(k))}


def test_normalise_folds_what_differs_between_jobs_of_one_cause() -> None:
    sha = "e992d1814b869c8def8e67ef117b3ed2cc95771f"
    oom = "OOM command not allowed when used memory > 'maxmemory'. script: {}, on @user_script:{}."
    assert normalise(oom.format(sha, 30)) == normalise(oom.format("a" * 8 + sha[8:], 31))
    assert normalise(oom.format(sha, 30)) == (
        "OOM command not allowed when used memory > 'maxmemory'. script: <hex>, "
        "on @user_script:<n>."
    )
    assert normalise("Missing lock for job order-17. moveToFinished") == (
        "Missing lock for job <id>. moveToFinished"
    )
    assert normalise("Missing lock for job 42. moveToFinished") == normalise(
        "Missing lock for job abc. moveToFinished"
    )
    assert normalise("connect ECONNREFUSED 127.0.0.1:6379") == "connect ECONNREFUSED <host>"
    assert normalise("connect ETIMEDOUT redis-0.redis.svc:6380") == "connect ETIMEDOUT <host>"
    assert normalise(CLOSED) == CLOSED
    assert normalise("READONLY You can't write against a read only replica.") == (
        "READONLY You can't write against a read only replica."
    )
    assert normalise("job stalled more than allowable limit") == (
        "job stalled more than allowable limit"
    )
    assert normalise("timeout after 1500 ms\n    at stack line") == "timeout after <n> ms"
    assert normalise(None) == normalise("  ") == "(no reason)"
    assert normalise('"Connection is closed."') == CLOSED  # the Python port stores JSON


def test_failed_groups_every_job_once_in_pages_and_by_time(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Ties on the failure time across page boundaries are read once; --since/--until
    cut by failure time; the whole set is never read in one command."""
    client: Any = plain_client(redis_server)  # replies are str (decode_responses)
    base = 1_800_000_000_000
    pipe = client.pipeline(transaction=False)
    for i in range(PAGE + 300):  # more than a page failed in the same millisecond
        pipe.hset(f"bull:mail:tie-{i}", mapping={"name": "send", "failedReason": CLOSED})
        pipe.zadd("bull:mail:failed", {f"tie-{i}": base})
    for i in range(600):  # then one a second, for an address each
        pipe.hset(f"bull:mail:late-{i}", mapping={
            "name": "bounce" if i % 2 else "send",
            "failedReason": f"connect ECONNREFUSED 10.0.{i // 250}.{i % 250}:6379"})  # fmt: skip
        pipe.zadd("bull:mail:failed", {f"late-{i}": base + 1000 * (i + 1)})
    pipe.hset("bull:mail:meta", "opts.maxLenEvents", 10000)
    pipe.execute()
    queue = QueueRef("bull", "mail")
    ids = [j.job_id for j in read_failed(client, queue)]
    assert len(ids) == len(set(ids)) == PAGE + 900

    env = target_env(tmp_path, redis_server)
    client.config_resetstat()
    result = run_cli("--json", "queues", "failed", env=env)
    assert result.returncode == 0, result.stderr
    assert int(info(client, "commandstats")["cmdstat_zrangebyscore"]["calls"]) >= 3
    (mail,) = json.loads(result.stdout)["queues"]
    groups = {g["reason"]: g for g in mail["groups"]}
    assert mail["failed"] == PAGE + 900
    assert groups[CLOSED]["count"] == PAGE + 300
    refused = groups["connect ECONNREFUSED <host>"]
    assert (refused["count"], refused["names"]) == (600, {"send": 300, "bounce": 300})
    assert (refused["first_failed_ms"], refused["last_failed_ms"]) == (base + 1000, base + 600_000)

    # 10 s to 100 s after `base`, both ends included: late-9 .. late-99
    since, until = "2027-01-15T08:00:10Z", "2027-01-15T08:01:40+00:00"
    assert base == 1_800_000_000_000  # 2027-01-15T08:00:00Z
    cut = run_cli("--json", "queues", "failed", "--since", since, "--until", until, env=env)
    assert cut.returncode == 0, cut.stderr
    (mail,) = json.loads(cut.stdout)["queues"]
    assert [(g["reason"], g["count"]) for g in mail["groups"]] == [
        ("connect ECONNREFUSED <host>", 91)
    ]
    text = run_cli("queues", "failed", env=env)
    assert text.returncode == 0, text.stderr
    assert f"mail: {PAGE + 900} failed" in text.stdout
    assert "connect ECONNREFUSED <host>" in text.stdout


def test_retry_failed_moves_jobs_back_as_bullmq_retries_them(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    fail_jobs(redis_server, "mail", [
        ("plain-0", "send", CLOSED, {}), ("plain-1", "send", CLOSED, {}),
        ("lifo-0", "send", CLOSED, {"lifo": True}),
        ("prio-0", "digest", CLOSED, {"priority": 7}),
        ("app-0", "send", "invalid address x@y", {}),
        ("app-1", "send", "invalid address z@w", {}),
    ])  # fmt: skip
    fail_jobs(redis_server, "held", [(f"h-{i}", "send", CLOSED, {}) for i in range(3)], pause=True)
    client: Any = plain_client(redis_server)  # replies are str (decode_responses)
    client.delete("bull:mail:marker", "bull:held:marker")
    env = target_env(tmp_path, redis_server)
    before = snapshot(client)

    dry = run_cli("--dry-run", "queues", "retry-failed", "--reason", "Connection", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "mail: 4 x 'Connection is closed.' (names: send 3, digest 1)" in dry.stdout
    assert "held: 3 x 'Connection is closed.' (names: send 3)" in dry.stdout
    assert snapshot(client) == before
    refused = run_cli("queues", "retry-failed", "--reason", "Connection", env=env)
    assert refused.returncode == 3, refused.stdout + refused.stderr  # no terminal, no --yes
    assert snapshot(client) == before

    result = run_cli("--yes", "queues", "retry-failed", "--reason", "Connection", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(client.zrange("bull:mail:failed", 0, -1)) == ["app-0", "app-1"]
    assert client.zcard("bull:held:failed") == 0
    # wait: LPUSH (oldest failure at the right end, taken first), lifo RPUSHed after
    assert client.lrange("bull:mail:wait", -1, -1) == ["lifo-0"]
    assert sorted(client.lrange("bull:mail:wait", 0, -2)) == ["plain-0", "plain-1"]
    # a prioritized job back in prioritized, BullMQ's score: priority * 2^32 + INCR pc
    pc = int(client.get("bull:mail:pc") or 0)
    assert client.zrange("bull:mail:prioritized", 0, -1, withscores=True) == [
        ("prio-0", float(7 * 2**32 + pc))
    ]
    # a paused (v5) queue: into `paused`, no marker to wake workers
    assert sorted(client.lrange("bull:held:paused", 0, -1)) == ["h-0", "h-1", "h-2"]
    assert client.exists("bull:held:wait", "bull:held:marker") == 0
    assert client.zrange("bull:mail:marker", 0, -1, withscores=True) == [("0", 0.0)]
    events = [f for _, f in client.xrange("bull:mail:events") if f.get("prev") == "failed"]
    assert sorted(e["jobId"] for e in events) == ["lifo-0", "plain-0", "plain-1", "prio-0"]
    assert {e["event"] for e in events} == {"waiting"}
    for job_id in ("plain-0", "prio-0"):
        job = client.hgetall(f"bull:mail:{job_id}")
        assert "failedReason" not in job
        assert "finishedOn" not in job
        assert "processedOn" not in job
        assert job["atm"] == "1"  # attemptsMade kept, as job.retry() keeps it
    entries = Journal.in_dir(tmp_path / "state").tail(100)
    calls = [e for e in entries if " call " in e["step"]]
    assert {e["step"] for e in calls} == {"mail call 1", "held call 1"}


def test_retry_failed_filters_by_name_time_and_limit(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    fail_jobs(redis_server, "mail", [(f"s-{i}", "send", CLOSED, {}) for i in range(6)]
              + [(f"d-{i}", "digest", CLOSED, {}) for i in range(3)])  # fmt: skip
    client: Any = plain_client(redis_server)  # replies are str (decode_responses)
    env = target_env(tmp_path, redis_server)
    oldest = [str(i) for i in client.zrange("bull:mail:failed", 0, -1)]
    by_name = run_cli("--yes", "queues", "retry-failed", "--name", "digest", env=env)
    assert by_name.returncode == 0, by_name.stdout + by_name.stderr
    assert {str(i) for i in client.zrange("bull:mail:failed", 0, -1)} == {
        f"s-{i}" for i in range(6)
    }
    limited = run_cli("--yes", "queues", "retry-failed", "--limit", "2", "-q", "mail", env=env)
    assert limited.returncode == 0, limited.stdout + limited.stderr
    sends = [i for i in oldest if i.startswith("s-")]
    assert [str(i) for i in client.zrange("bull:mail:failed", 0, -1)] == sends[2:]
    later = run_cli("--yes", "queues", "retry-failed", "--since", "2999-01-01", env=env)
    assert later.returncode == 0, later.stdout + later.stderr
    assert "nothing to retry" in later.stdout
    assert client.zcard("bull:mail:failed") == 4


def test_retry_failed_runs_in_bounded_calls(tmp_path: Path, redis_server: RedisServer) -> None:
    client: Any = plain_client(redis_server)  # replies are str (decode_responses)
    jobs = 3000
    pipe = client.pipeline(transaction=False)
    for i in range(jobs):
        pipe.hset(f"bull:bulk:j-{i}", mapping={
            "name": "send", "data": "{}", "opts": "{}", "priority": 0, "atm": 1,
            "failedReason": CLOSED, "finishedOn": 1_800_000_000_000 + i,
            "processedOn": 1_800_000_000_000 + i})  # fmt: skip
        pipe.zadd("bull:bulk:failed", {f"j-{i}": 1_800_000_000_000 + i})
    pipe.hset("bull:bulk:meta", "opts.maxLenEvents", 10000)
    pipe.execute()
    env = target_env(tmp_path, redis_server)
    result = run_cli("--yes", "queues", "retry-failed", env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert client.llen("bull:bulk:wait") == jobs
    assert client.zcard("bull:bulk:failed") == 0
    # oldest failure at the right end of wait: taken first
    assert client.lrange("bull:bulk:wait", -1, -1) == ["j-0"]
    calls = [e for e in Journal.in_dir(tmp_path / "state").tail(1000) if " call " in e["step"]]
    examined = [e["figures"]["examined"] for e in calls]
    assert sum(examined) == jobs
    assert len(calls) >= jobs // 200
    assert max(examined) <= 200


def test_failed_reads_a_replica_and_retry_failed_refuses_it(
    tmp_path: Path, redis_factory: RedisFactory
) -> None:
    master = redis_factory()
    fail_jobs(master, "mail", [(f"s-{i}", "send", CLOSED, {}) for i in range(3)])
    replica = redis_factory(settings={"replicaof": f"127.0.0.1 {master.port}"})
    rclient: Any = plain_client(replica)
    wait_until(lambda: rclient.info("replication")["master_link_status"] == "up", "sync")
    wait_until(lambda: rclient.dbsize() == plain_client(master).dbsize(), "replica to catch up")
    before = snapshot(rclient)
    rclient.config_resetstat()
    env = target_env(tmp_path, replica)
    shown = run_cli("--json", "queues", "failed", env=env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["queues"][0]["failed"] == 3
    refused = run_cli("--yes", "queues", "retry-failed", env=env)
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "the target is a replica" in refused.stderr
    stats = set(info(rclient, "commandstats"))
    assert stats & {f"cmdstat_{c}" for c in WRITE_COMMANDS} == set()
    assert snapshot(rclient) == before
    assert plain_client(master).zcard("bull:mail:failed") == 3


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("queues", "failed", "-q", "nope"), "unknown queue(s) nope"),
        (("queues", "failed", "--since", "yesterday"), "--since: expected a time, got 'yesterday'"),
        (("queues", "failed", "--until", "soon"), "--until: expected a time, got 'soon'"),
        (("queues", "retry-failed", "-q", "nope"), "unknown queue(s) nope"),
        (("queues", "retry-failed", "--since", "3 days"), "--since: expected a time"),
        (("queues", "retry-failed", "--since", "1h", "--until", "2h"), "is after --until"),
        (("queues", "retry-failed", "--reason", "OOM("), "--reason: invalid regular expression"),
        (("queues", "retry-failed", "--limit", "0"), "--limit: expected a number of jobs"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else "",
)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    tmp_path: Path, redis_server: RedisServer, args: tuple[str, ...], named: str
) -> None:
    fail_jobs(redis_server, "mail", [("s-0", "send", CLOSED, {})])
    client: Any = plain_client(redis_server)  # replies are str (decode_responses)
    before = snapshot(client)
    result = run_cli("--yes", *args, env=target_env(tmp_path, redis_server))
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    assert named in lines[0]
    assert re.match(r"HINT: \S", lines[1])
    assert result.stdout == ""
    assert snapshot(client) == before
