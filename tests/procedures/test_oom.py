"""`recover oom` on a real server filled to maxmemory under noeviction: writes get
OOM, the procedure purges the rebuildable categories, writes work again, memory
before/after and the permanent fix are reported."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import redis

from redis_runbook.lab.server import RedisServer
from redis_runbook.memory import MemoryFigures
from redis_runbook.procedures.oom import compose_size, permanent_fix, redis_size, round_size
from tests.support.cli import process_cli
from tests.support.servers import RedisFactory, plain_client

MIB = 1024**2
GIB = 1024**3
VALUE = b"v" * 4000


def fill_until_oom(client: redis.Redis, prefix: str) -> int:
    """SET 4 KB strings under `prefix` until Redis refuses them with OOM, then pull
    maxmemory 2 MiB below used_memory: the first refusals are not final (query
    and AOF buffers come and go), this makes every later write fail for sure."""
    written = 0
    while True:
        pipe = client.pipeline(transaction=False)
        for i in range(written, written + 50):
            pipe.set(f"{prefix}{i}", VALUE)
        replies = pipe.execute(raise_on_error=False)
        errors = [r for r in replies if isinstance(r, Exception)]
        assert all(isinstance(e, redis.exceptions.OutOfMemoryError) for e in errors)
        written += len(replies) - len(errors)
        if errors:
            break
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", str(used - 2 * MIB))
    return written


def full_server(redis_factory: RedisFactory) -> tuple[RedisServer, redis.Redis]:
    """A 16 MB noeviction server holding BullMQ-like and session keys, then filled
    to maxmemory with cache keys."""
    server = redis_factory(settings={"maxmemory": "16mb"})
    client = plain_client(server, decode_responses=False)
    for i in range(100):
        client.hset(f"bull:q:{i}", mapping={"data": "{}"})
        client.set(f"session:{i}", b"s" * 100)
    fill_until_oom(client, "cache:")
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        client.set("app:write", b"1")
    return server, client


def count(client: redis.Redis, pattern: str) -> int:
    return sum(1 for _ in client.scan_iter(match=pattern, count=1000))


def test_recover_oom_frees_memory_and_writes_work_again(
    tmp_path: Path, redis_factory: RedisFactory
) -> None:
    server, client = full_server(redis_factory)
    cache_keys = count(client, "cache:*")
    env = process_cli(tmp_path, server)

    dry = env.run("--dry-run", "--json", "recover", "oom")
    plan = json.loads(dry.stdout)["plan"]
    assert plan["confirm"] == "yes/no"
    assert [s["destructive"] for s in plan["steps"]] == [False, True, True, False]
    assert any("FULL" in note for note in plan["notes"])
    assert count(client, "cache:*") == cache_keys

    result = env.run("--yes", "--json", "recover", "oom")
    assert result.returncode == 0, result.stderr
    results = json.loads(result.stdout)["results"]
    measure, _ratelimit, cache, report = (r["message"] for r in results)
    percent = re.search(r"maxmemory \(([\d.]+) %\)", measure)
    assert percent, measure
    assert float(percent[1]) >= 100
    assert f"cache {cache_keys} keys" in measure
    assert f"deleted {cache_keys} cache keys" in cache
    assert "memory before: used" in report
    assert "after: used" in report
    assert "writes are accepted again" in report
    suggested = re.search(r"`maxmemory (\d+)mb`", report)
    limit = re.search(r"deploy.resources.limits.memory: (\d+)M", report)
    assert suggested, report
    assert limit, report
    assert 16 < int(suggested[1]) < int(limit[1])

    assert client.set("app:write", b"1")
    assert count(client, "cache:*") == 0
    assert count(client, "bull:*") == 100
    assert count(client, "session:*") == 100
    assert [e["outcome"] for e in env.journal()] == ["started", *["done"] * 4, "finished"]


def test_recover_oom_fails_when_purging_is_not_enough(
    tmp_path: Path, redis_factory: RedisFactory
) -> None:
    server = redis_factory(settings={"maxmemory": "16mb"})
    client = plain_client(server, decode_responses=False)
    for i in range(400):
        client.set(f"cache:{i}", b"c")
    fill_until_oom(client, "app:")  # uncategorised keys hold the memory
    env = process_cli(tmp_path, server)

    # Said before anything is purged, in the dry run and without it: what the
    # purge would free against what must be freed, and what would help instead.
    for args in (("--dry-run", "recover", "oom"), ("--yes", "recover", "oom")):
        refused = env.run(*args)
        assert refused.returncode == 3, (args, refused.stdout, refused.stderr)
        text = " ".join(refused.stderr.split())
        assert "purging cannot help" in text
        assert "ratelimit, cache hold" in text
        assert "400 keys" in text
        assert re.search(r"must free at least [\d.]+ [KM]iB", text), text
        assert re.search(r"CONFIG SET maxmemory \d+mb", text), text
        assert re.search(r"other \(no category\): [\d,]+ keys ≈ [\d.]+ MiB", text), text
        assert "--purge-anyway" in text
    assert count(client, "cache:*") == 400
    assert env.journal() == []

    anyway = env.run("--yes", "recover", "oom", "--purge-anyway")
    assert anyway.returncode == 1
    assert "writes are still refused" in anyway.stderr
    assert "CONFIG SET maxmemory" in anyway.stderr
    assert count(client, "cache:*") == 0
    assert count(client, "app:*") > 0


def test_purge_steps_show_the_keys_and_memory_they_will_delete(
    tmp_path: Path, redis_factory: RedisFactory
) -> None:
    server, client = full_server(redis_factory)
    cache_keys = count(client, "cache:*")
    env = process_cli(tmp_path, server)
    plan = json.loads(env.run("--dry-run", "--json", "recover", "oom").stdout)["plan"]
    titles = [s["title"] for s in plan["steps"]]
    assert re.search(rf"purge cache \(cache:\*\): {cache_keys:,} keys ≈ [\d.]+ MiB", titles[2])
    assert "purge ratelimit (ratelimit:*): 0 keys" in titles[1]
    assert any("cache" in n and f"{cache_keys:,} keys" in n for n in plan["notes"])

    purge_plan = json.loads(
        env.run("--dry-run", "--json", "keys", "purge", "--category", "cache").stdout
    )["plan"]
    assert re.search(
        rf"purge cache \(cache:\*\): {cache_keys:,} keys ≈ [\d.]+ MiB",
        purge_plan["steps"][1]["title"],
    )
    human = env.run("--dry-run", "keys", "purge", "--category", "cache")
    assert f"{cache_keys:,} keys" in human.stdout


def test_recover_oom_critical_category_needs_its_name_typed(
    tmp_path: Path, redis_factory: RedisFactory
) -> None:
    server, client = full_server(redis_factory)
    env = process_cli(tmp_path, server)
    before = set(client.scan_iter(count=1000))

    refused = env.run("--yes", "recover", "oom", "--category", "session")
    assert refused.returncode == 3
    assert "--include-critical session" in refused.stderr

    unknown = env.run("--yes", "recover", "oom", "--include-critical", "sessions")
    assert unknown.returncode == 2
    assert "the categories are: bullmq, session, ratelimit, cache, pubsub" in unknown.stderr

    plan = json.loads(
        env.run("--dry-run", "--json", "recover", "oom", "--include-critical", "session").stdout
    )["plan"]
    assert plan["confirm"] == "typed"
    assert [s["title"].split()[1] for s in plan["steps"][1:-1]] == ["session", "ratelimit", "cache"]

    no_tty = env.run("recover", "oom", "--include-critical", "session")
    assert no_tty.returncode == 3
    assert set(client.scan_iter(count=1000)) == before


def test_recover_oom_on_a_down_server_changes_nothing(
    tmp_path: Path, redis_factory: RedisFactory
) -> None:
    server = redis_factory()
    env = process_cli(tmp_path, server)
    server.kill()
    result = env.run("--yes", "recover", "oom")
    assert result.returncode == 1
    assert "does not answer" in result.stderr
    assert "recover restart" in result.stderr
    assert env.journal() == []


def figures(used: int, maxmemory: int, rejections: int = 0) -> MemoryFigures:
    return MemoryFigures(used, used, maxmemory, "noeviction", used, 1.0, 0, rejections)


def test_permanent_fix_sizes() -> None:
    assert round_size(10 * MIB) == 16 * MIB
    assert round_size(20.1 * MIB) == 24 * MIB
    assert round_size(8 * GIB * 1.25) == 10 * GIB
    assert (redis_size(10 * GIB), compose_size(13 * GIB)) == ("10gb", "13G")
    assert (redis_size(80 * MIB), compose_size(112 * MIB)) == ("80mb", "112M")
    # The seed's deployment, full: 8gb -> 10gb, container 13G (8G -> 10G in the seed).
    full = permanent_fix(figures(8 * GIB, 8 * GIB, rejections=5))
    assert "`maxmemory 10gb`" in full
    assert "CONFIG SET maxmemory 10gb" in full
    assert "limits.memory: 13G" in full
    # Not under pressure: maxmemory stays, the container limit still matters.
    calm = permanent_fix(figures(1 * GIB, 8 * GIB))
    assert "need not change" in calm
    assert "limits.memory: 10G" in calm
    unlimited = permanent_fix(figures(3 * GIB, 0))
    assert "from 0 (no limit) to 4gb" in unlimited
