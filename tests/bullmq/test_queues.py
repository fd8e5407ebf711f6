"""`queues status` and `queues recover-stale` on queues written by the official
Python bullmq 2.x (the Node v5 layout), with the faults a restart leaves behind made
for real: workers that took jobs and died (locks expiring), a lock without TTL and
an id without its job hash (a partial restore)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from bullmq import Queue, Worker

from redis_runbook.bullmq.counts import queue_counts
from redis_runbook.bullmq.discovery import discover
from redis_runbook.bullmq.keys import QueueRef, queue_name_from_key
from redis_runbook.lab.server import RedisServer
from tests.support.cli import run_cli, target_env
from tests.support.servers import RedisFactory, info, plain_client
from tests.support.waiting import wait_until

WRITE_COMMANDS = (
    "eval", "evalsha", "fcall", "set", "lpush", "rpush", "lrem", "del", "unlink", "zadd",
    "zrem", "hset", "hincrby", "xadd", "rename", "expire", "pexpire", "rpoplpush", "lmove",
)  # fmt: skip


def active_ids(client: redis.Redis, queue: str) -> set[str]:
    """The ids in a queue's active list."""
    return {str(i) for i in client.lrange(f"bull:{queue}:active", 0, -1)}


def connection(server: RedisServer) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": server.port}


async def _fill(server: RedisServer, queue: str, prefix: str, jobs: int, dead: int,
                live: int, pause: bool) -> None:  # fmt: skip
    conn = connection(server)
    q = Queue(queue, {"connection": conn, "prefix": prefix})
    await q.addBulk(
        [{"name": "work", "data": {"n": i}, "opts": {"jobId": f"job-{i}"}} for i in range(jobs)]
    )
    for lock_ms, count in ((1, dead), (600_000, live)):
        options = {"connection": conn, "prefix": prefix, "autorun": False, "lockDuration": lock_ms}
        worker = Worker(queue, None, options)
        for _ in range(count):
            assert await worker.getNextJob(uuid.uuid4().hex) is not None
        await worker.close()
    if pause:
        await q.pause()
    await q.close()


def fill(server: RedisServer, queue: str, *, prefix: str = "bull", jobs: int = 20,
         dead: int = 0, live: int = 0, pause: bool = False) -> None:  # fmt: skip
    """Add jobs, let `dead` be fetched by a worker that dies (1 ms lock) and `live`
    by one that holds a 10-minute lock; optionally pause the queue (v5 layout)."""
    asyncio.run(_fill(server, queue, prefix, jobs, dead, live, pause))


def expired(client: redis.Redis, queue: str, ids: list[str]) -> None:
    """Wait until the dead workers' 1 ms locks are really gone."""
    wait_until(
        lambda: all(client.pttl(f"bull:{queue}:{i}:lock") == -2 for i in ids), "locks to expire"
    )


def test_names_are_parsed_after_the_prefix_up_to_the_last_colon() -> None:
    assert queue_name_from_key("bull:enrich:batch:meta", "bull", "meta") == "enrich:batch"
    assert queue_name_from_key("{bull}:q1:id", "{bull}", "id") == "q1"
    assert queue_name_from_key("app:bull:q2:meta", "app:bull", "meta") == "q2"
    assert queue_name_from_key("bull:q:meta", "other", "meta") is None


def test_discovery_prefixes_hash_tags_and_legacy_names(redis_server: RedisServer) -> None:
    fill(redis_server, "enrich:batch", jobs=3)  # the seed's legacy name, ':' and all
    fill(redis_server, "tagged", prefix="{bull}", jobs=2)
    fill(redis_server, "nested", prefix="app:bull", jobs=1)
    client = plain_client(redis_server)
    client.set("bull:not-a-queue:id", "7")  # an `id` key without meta: not a queue
    client.config_resetstat()
    found = discover(client, ["bull", "{bull}", "app:bull"])
    assert [(q.prefix, q.name) for q in found.queues] == [
        ("app:bull", "nested"),
        ("bull", "enrich:batch"),
        ("{bull}", "tagged"),
    ]
    assert [q.name for q in found.without_meta] == ["not-a-queue"]
    stats = client.info("commandstats")
    assert "cmdstat_keys" not in stats
    assert "cmdstat_scan" in stats


def test_status_counts_every_state(tmp_path: Path, redis_server: RedisServer) -> None:
    fill(redis_server, "work", jobs=30, dead=4, live=3)
    fill(redis_server, "held", jobs=5, pause=True)
    client = plain_client(redis_server)
    expired(client, "work", ["job-0", "job-1", "job-2", "job-3"])
    client.lpush("bull:work:active", "ghost")  # an id whose hash is gone
    client.set("bull:work:job-29:lock", "token")  # a lock with no TTL
    client.lpush("bull:work:active", "job-29")
    client.lrem("bull:work:wait", 1, "job-29")
    env = target_env(tmp_path, redis_server)
    result = run_cli("--json", "queues", "status", env=env)
    assert result.returncode == 0, result.stderr
    queues = {q["queue"]: q for q in json.loads(result.stdout)["queues"]}
    work, held = queues["work"], queues["held"]
    assert work["waiting"] == 30 - 4 - 3 - 1
    assert work["active_split"] == {
        "locked": 3, "stale": 4, "immortal": 1, "orphan": 1,
        "max_lock_ttl_ms": work["active_split"]["max_lock_ttl_ms"],
    }  # fmt: skip
    assert 0 < work["active_split"]["max_lock_ttl_ms"] <= 600_000
    assert held["paused"] is True
    # As Node's getJobCounts(): waiting 0, paused 5 (the total is an extra field).
    assert (held["waiting"], held["paused_list"], held["waiting_total"]) == (0, 5, 5)
    assert (held["job_counts"]["waiting"], held["job_counts"]["paused"]) == (0, 5)
    human = run_cli("queues", "status", env=env)
    assert "yes: 5" in human.stdout
    assert "queues recover-stale" in human.stdout  # the caption names the next step


def test_status_never_truncates_names_and_warns_about_colons(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    legacy, modern = "enrich:batch-prospects-europe", "enrich-batch-prospects-europe"
    fill(redis_server, legacy, jobs=2)
    fill(redis_server, modern, jobs=3)
    env = target_env(tmp_path, redis_server)
    human = run_cli("queues", "status", env=env)
    assert human.returncode == 0, human.stderr
    assert "…" not in human.stdout
    rows = [line for line in human.stdout.splitlines() if "enrich" in line]
    assert any(legacy in row for row in rows), human.stdout
    assert any(modern in row for row in rows), human.stdout
    warning = " ".join(human.stdout.split())
    assert f"queue {legacy} has ':' in its name" in warning
    assert "BullMQ v5 workers cannot use it" in warning
    assert f"queue {modern} has" not in warning
    document = json.loads(run_cli("--json", "queues", "status", env=env).stdout)
    assert {q["queue"] for q in document["queues"]} == {legacy, modern}
    assert any(legacy in w and "v5" in w for w in document["warnings"])
    # A name too long for any table row: one line per queue, the name still whole.
    huge = "tenant-" + "x" * 150
    fill(redis_server, huge, jobs=1)
    lines = run_cli("queues", "status", env=env)
    assert lines.returncode == 0, lines.stderr
    assert "…" not in lines.stdout
    assert any(line.startswith(f"{huge}: waiting 1,") for line in lines.stdout.splitlines())
    assert any(line.startswith(f"{legacy}: waiting 2,") for line in lines.stdout.splitlines())


def test_status_is_read_only_on_a_replica(tmp_path: Path, redis_factory: RedisFactory) -> None:
    master = redis_factory()
    fill(master, "work", jobs=10, dead=2)
    replica = redis_factory(settings={"replicaof": f"127.0.0.1 {master.port}"})
    rclient = plain_client(replica)
    wait_until(lambda: rclient.info("replication")["master_link_status"] == "up", "sync")
    wait_until(lambda: rclient.dbsize() == plain_client(master).dbsize(), "replica to catch up")
    before = {k: rclient.dump(k) for k in rclient.scan_iter()}
    rclient.config_resetstat()
    result = run_cli("--json", "queues", "status", env=target_env(tmp_path, replica))
    assert result.returncode == 0, result.stderr
    stats = set(info(rclient, "commandstats"))
    writes = {f"cmdstat_{c}" for c in WRITE_COMMANDS}
    assert stats & writes == set()
    assert "cmdstat_scan" in stats
    assert {k: rclient.dump(k) for k in rclient.scan_iter()} == before


def test_recover_stale_moves_only_jobs_without_a_lock(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    fill(redis_server, "work", jobs=30, dead=5, live=3)
    client = plain_client(redis_server)
    dead = [f"job-{i}" for i in range(5)]
    live = [f"job-{i}" for i in range(5, 8)]
    expired(client, "work", dead)
    client.lpush("bull:work:active", "ghost")
    client.set("bull:work:job-29:lock", "immortal")
    client.lrem("bull:work:wait", 1, "job-29")
    client.lpush("bull:work:active", "job-29")
    stc_before = {i: client.hget(f"bull:work:{i}", "stc") for i in dead}
    client.delete("bull:work:marker")
    env = target_env(tmp_path, redis_server)

    result = run_cli("--yes", "queues", "recover-stale", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert active_ids(client, "work") == {
        *live,
        "ghost",
        "job-29",
    }  # locked, orphan and immortal untouched
    wait_list = client.lrange("bull:work:wait", 0, -1)
    assert wait_list[-5:] == list(reversed(dead))  # head of the queue: job-0 runs next
    assert client.zrange("bull:work:marker", 0, -1) == ["0"]  # blocked workers woken
    assert {i: client.hget(f"bull:work:{i}", "stc") for i in dead} == stc_before
    events = [e[1] for e in client.xrange("bull:work:events")]
    waiting = [e["jobId"] for e in events if e.get("event") == "waiting" and e.get("prev")]
    assert sorted(waiting) == sorted(dead)
    assert not [e for e in events if e.get("event") == "stalled"]
    assert "1 immortal" in result.stdout
    assert "1 orphan" in result.stdout

    broken = run_cli(
        "--yes", "queues", "recover-stale", "--break-immortal-locks",
        "--i-understand-data-loss", env=env,
    )  # fmt: skip
    assert broken.returncode == 0, broken.stdout + broken.stderr
    assert active_ids(client, "work") == {*live, "ghost"}
    assert client.exists("bull:work:job-29:lock") == 0


def test_paused_v5_queue_and_count_as_stall(tmp_path: Path, redis_server: RedisServer) -> None:
    fill(redis_server, "held", jobs=10, dead=3, pause=True)
    client = plain_client(redis_server)
    dead = ["job-0", "job-1", "job-2"]
    expired(client, "held", dead)
    client.delete("bull:held:marker")
    env = target_env(tmp_path, redis_server)
    result = run_cli("--yes", "queues", "recover-stale", "--count-as-stall", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert client.exists("bull:held:wait") == 0  # v5: a paused queue's jobs live in `paused`
    assert client.lrange("bull:held:paused", -3, -1) == list(reversed(dead))
    assert client.exists("bull:held:marker") == 0  # no wake-up while paused
    assert [client.hget(f"bull:held:{i}", "stc") for i in dead] == ["1", "1", "1"]


def test_refusals_and_dry_run_change_nothing(tmp_path: Path, redis_factory: RedisFactory) -> None:
    server = redis_factory(settings={"maxmemory-policy": "allkeys-lru"})
    fill(server, "work", jobs=10, dead=2)
    client = plain_client(server)
    expired(client, "work", ["job-0", "job-1"])
    before = {k: client.dump(k) for k in client.scan_iter()}
    env = target_env(tmp_path, server)
    evicting = run_cli("--yes", "queues", "recover-stale", env=env)
    assert evicting.returncode == 3
    assert "maxmemory-policy is allkeys-lru" in evicting.stderr
    dry = run_cli("--dry-run", "queues", "recover-stale", "--force", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "work: 2 stale" in dry.stdout
    unknown = run_cli("--yes", "queues", "recover-stale", "--queue", "nope", env=env)
    assert unknown.returncode == 2
    assert "unknown queue(s) nope" in unknown.stderr
    assert "known: work" in unknown.stderr
    assert {k: client.dump(k) for k in client.scan_iter()} == before


def test_no_queues_under_the_prefix(tmp_path: Path, redis_server: RedisServer) -> None:
    env = target_env(tmp_path, redis_server, {"bullmq": {"prefixes": ["nothing-here"]}})
    result = run_cli("queues", "status", env=env)
    assert result.returncode == 2
    assert "no BullMQ queues under prefix(es) nothing-here" in result.stderr
    assert "HINT:" in result.stderr


@pytest.mark.parametrize("name", ["work"])
def test_queue_ref_keys(name: str) -> None:
    ref = QueueRef("{bull}", name)
    assert ref.key("wait") == "{bull}:work:wait"
    assert ref.lock("7") == "{bull}:work:7:lock"
    assert ref.worker_client_names() == ("{bull}:d29yaw==", "{bull}:work")


def test_an_error_reply_while_counting_is_raised_not_summed(redis_server: RedisServer) -> None:
    """A key of the wrong type under a queue (or a BUSY server) answers an error; the
    counts raise it for the CLI to put in one line (it was a TypeError traceback)."""
    client = plain_client(redis_server, decode_responses=False)
    client.set("bull:odd:wait", "not a list")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        queue_counts(client, [QueueRef("bull", "odd")])
