"""Keyspace by category and the safe purge, on real redis-server processes:
Redis' own MATCH is the oracle for our glob rules; purges are checked key by key
(binary names, TTLs, look-alike keys, the tool's own keys) and through the CLI
(dry run, confirmation, refusal of non-rebuildable categories, journal)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from redis_runbook.cli.progress import walk_progress
from redis_runbook.config import Category, Config
from redis_runbook.errors import Refused, UnknownName
from redis_runbook.keyspace import (
    OTHER,
    Classifier,
    category_stats,
    compile_glob,
    count_by_category,
)
from redis_runbook.keyspace_purge import purge, select_categories
from redis_runbook.lab.server import RedisServer
from tests.support.cli import process_cli
from tests.support.servers import RedisFactory, plain_client

SEED_CATEGORIES = Config().categories
CACHE = next(c for c in SEED_CATEGORIES if c.name == "cache")
SESSION = next(c for c in SEED_CATEGORIES if c.name == "session")

BINARY_CACHE = b"cache:\xff\xfe\x00bin"
LOOK_ALIKES = [b"xcache:1", b"my-cache:2", b"Cache:3", b"cache", b"session:cache:4"]
OWN = b"redis-runbook:owned-by-the-tool"


def raw(server: RedisServer) -> redis.Redis:
    """A bytes client: key names need not be UTF-8."""
    return plain_client(server, decode_responses=False)


def all_keys(client: redis.Redis) -> set[bytes]:
    """Every key name (SCAN, never KEYS)."""
    return set(client.scan_iter(count=1000))


def populate(client: redis.Redis, cache: int = 300) -> dict[str, set[bytes]]:
    """cache:* (a third with a TTL), a binary cache key, bull/session/ratelimit keys,
    look-alikes that are not cache keys, and a key of the tool's own."""
    pipe = client.pipeline(transaction=False)
    groups: dict[str, set[bytes]] = {"cache": set(), "kept": set()}
    for i in range(cache):
        key = f"cache:user:{i}".encode()
        pipe.set(key, b"v" * 100, px=600_000 if i % 3 == 0 else None)
        groups["cache"].add(key)
    pipe.set(BINARY_CACHE, b"\x00\x01")
    groups["cache"].add(BINARY_CACHE)
    for i in range(50):
        for key in (f"bull:q:{i}".encode(), f"session:{i}".encode()):
            pipe.hset(key.decode(), mapping={"a": "1"})
            groups["kept"].add(key)
        pipe.set(f"ratelimit:{i}".encode(), b"1", ex=600)
        groups["kept"].add(f"ratelimit:{i}".encode())
    for key in [*LOOK_ALIKES, OWN]:
        pipe.set(key, b"x")
        groups["kept"].add(key)
    pipe.execute()
    return groups


GLOB_KEYS = [
    b"cache:1",
    b"cache:a",
    b"cache:",
    b"cache:*x",
    b"cache:\\x",
    b"c4che:9",
    b"hello",
    b"hallo",
    b"hxllo",
    b"h-llo",
    b"h]llo",
    b"[x",
    b"a[b",
    b"\\",
    b"x\\",
    b"\xff\xfe",
    b"a\nb",
    b"^x",
]
GLOB_PATTERNS = [
    "cache:*",
    "c?che:*",
    "cache:[0-9]",
    "cache:[^0-9]",
    "cache:[9-0]",
    "cache:\\*x",
    "cache:\\\\x",
    "h[ae]llo",
    "h[^e]llo",
    "h[a-]llo",
    "h[\\]]llo",
    "[[]x",
    "a[",
    "\\",
    "*\\",
    "*",
    "?",
    "??",
    "a?b",
    "[]x",
    "[^]x",
    "^x",
    "*[",
]


def test_glob_rules_are_redis_match_rules(redis_factory: RedisFactory) -> None:
    client = raw(redis_factory())
    for key in GLOB_KEYS:
        client.set(key, b"1")
    for pattern in GLOB_PATTERNS:
        by_redis = set(client.scan_iter(match=pattern, count=1000))
        ours = {k for k in GLOB_KEYS if compile_glob(pattern).fullmatch(k)}
        assert ours == by_redis, pattern


def test_classifier_first_category_wins() -> None:
    categories = [
        Category(name="hot", pattern="cache:hot:*", rebuildable=False),
        Category(name="cache", pattern="cache:*", rebuildable=True),
    ]
    classify = Classifier(categories)
    assert classify(b"cache:hot:1") == "hot"
    assert classify(b"cache:cold:1") == "cache"
    assert classify(b"\xffcache:1") == OTHER
    assert Classifier([])(b"cache:1") == OTHER


def test_category_stats_counts_memory_and_ttls(redis_factory: RedisFactory) -> None:
    client = raw(redis_factory())
    populate(client)
    progress: list[tuple[int, int | None]] = []
    stats = category_stats(
        client, SEED_CATEGORIES, sample=1000, on_progress=lambda d, t: progress.append((d, t))
    )
    cache = stats.get("cache")
    assert cache.keys == 301
    assert cache.exact
    assert cache.estimated_with_ttl == 100
    assert cache.estimated_bytes >= 300 * 100  # MEMORY USAGE counts the values and more
    assert stats.get("session").keys == 51  # session:cache:4 is a session key
    assert stats.get("ratelimit").estimated_with_ttl == 50
    assert stats.get(OTHER).keys == len(LOOK_ALIKES) - 1  # session:cache:4 is a session
    assert stats.scanned == sum(s.keys for s in stats.categories.values())
    assert stats.scanned == len(all_keys(client)) - 1  # the tool's own key is not counted
    assert progress
    assert progress[-1][0] == stats.scanned

    # A small sample scales: every estimate stays in proportion.
    sampled = category_stats(client, SEED_CATEGORIES, sample=30).get("cache")
    assert sampled.sampled == 30
    assert not sampled.exact
    assert 0.5 * cache.estimated_bytes < sampled.estimated_bytes < 1.5 * cache.estimated_bytes
    assert category_stats(client, SEED_CATEGORIES, sample=0).get("cache").estimated_bytes == 0


def test_purge_deletes_exactly_the_category(redis_factory: RedisFactory) -> None:
    client = raw(redis_factory())
    groups = populate(client, cache=2500)
    before = all_keys(client)
    result = purge(client, CACHE, categories=SEED_CATEGORIES, batch=97)
    after = all_keys(client)
    assert before - after == groups["cache"]
    assert after == groups["kept"]
    assert result.deleted == len(groups["cache"]) == 2501
    assert "2501 cache keys" in result.describe()
    # Nothing left to do: a second purge deletes nothing.
    assert purge(client, CACHE, categories=SEED_CATEGORIES).deleted == 0


def test_purge_respects_earlier_categories_and_own_keys(redis_factory: RedisFactory) -> None:
    client = raw(redis_factory())
    groups = populate(client, cache=20)
    everything = Category(name="everything", pattern="*", rebuildable=True)
    categories = [*SEED_CATEGORIES, everything]
    result = purge(client, everything, categories=categories, max_ops_per_s=10_000)
    left = all_keys(client)
    # Only keys no earlier category claims went; the tool's own key stayed.
    assert left == (groups["cache"] | groups["kept"]) - set(LOOK_ALIKES) | {b"session:cache:4"}
    assert OWN in left
    assert result.deleted == len(LOOK_ALIKES) - 1
    assert result.skipped > 0


def test_purge_refuses_a_category_that_is_not_rebuildable(redis_factory: RedisFactory) -> None:
    client = raw(redis_factory())
    populate(client, cache=5)
    before = all_keys(client)
    with pytest.raises(Refused, match="not rebuildable"):
        purge(client, SESSION, categories=SEED_CATEGORIES)
    assert all_keys(client) == before
    purge(client, SESSION, categories=SEED_CATEGORIES, allow_not_rebuildable=True)
    assert count_by_category(client, SEED_CATEGORIES).by_category["session"] == 0


def test_select_categories() -> None:
    assert [c.name for c in select_categories(SEED_CATEGORIES, None)] == ["ratelimit", "cache"]
    assert [c.name for c in select_categories(SEED_CATEGORIES, ["cache"])] == ["cache"]
    both = select_categories(SEED_CATEGORIES, None, ["session"])
    assert [c.name for c in both] == ["session", "ratelimit", "cache"]
    with pytest.raises(UnknownName, match="bullmq, session, ratelimit, cache, pubsub"):
        select_categories(SEED_CATEGORIES, ["caches"])
    with pytest.raises(Refused, match="not rebuildable") as refused:
        select_categories(SEED_CATEGORIES, ["bullmq"])
    assert "--include-critical bullmq" in refused.value.hint
    with pytest.raises(UnknownName, match="rebuildable"):
        select_categories([SESSION], None)


def test_keys_stats_cli(tmp_path: Path, redis_factory: RedisFactory) -> None:
    server = redis_factory()
    populate(raw(server), cache=40)
    env = process_cli(tmp_path, server)
    result = env.run("keys", "stats", "--json", "--sample", "10")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document) == {"target", "memory", "scanned", "seconds", "sample", "categories"}
    by_name = {c["name"]: c for c in document["categories"]}
    assert by_name["cache"]["keys"] == 41
    assert by_name["cache"]["sampled"] == 10
    assert by_name["cache"]["rebuildable"] is True
    assert document["memory"]["maxmemory"] == 64 * 1024 * 1024
    human = env.run("keys", "stats")
    assert human.returncode == 0
    assert "cache:*" in human.stdout
    assert "maxmemory" in human.stdout


def test_purge_cli_dry_run_confirmation_journal(
    tmp_path: Path, redis_factory: RedisFactory
) -> None:
    server = redis_factory()
    client = raw(server)
    groups = populate(client, cache=1200)
    env = process_cli(tmp_path, server)
    before = all_keys(client)

    dry = env.run("--dry-run", "keys", "purge", "--category", "cache")
    assert dry.returncode == 0, dry.stderr
    assert "[destructive]" in dry.stdout
    assert "dry run: nothing was changed" in dry.stdout
    assert all_keys(client) == before

    unconfirmed = env.run("keys", "purge", "--category", "cache")
    assert unconfirmed.returncode == 3
    assert "HINT:" in unconfirmed.stderr
    assert all_keys(client) == before
    assert env.journal() == []

    done = env.run("--yes", "--json", "keys", "purge", "--category", "cache")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert [r["ok"] for r in document["results"]] == [True, True, True]
    assert "deleted 1201 cache keys" in document["results"][1]["message"]
    assert all_keys(client) == groups["kept"]
    # The evidence is DBSIZE arithmetic (the runner's lock key counted both times),
    # not two more walks of the keyspace.
    assert document["results"][2]["message"] == (
        f"{len(groups['kept']) + 1:,} keys now: {len(before) + 1:,} before, "
        "1,201 deleted by the purge"
    )
    entries = env.journal()
    steps = [(e["step"], e["outcome"]) for e in entries]
    assert steps[0] == ("plan", "started")
    assert steps[-1] == ("plan", "finished")
    assert [s for s in steps[1:-1] if s[1] == "done"] == [
        (step["title"], "done") for step in document["plan"]["steps"]
    ]
    assert all(e["procedure"] == "keys purge" for e in entries)


def test_purge_cli_refuses_critical_categories(tmp_path: Path, redis_factory: RedisFactory) -> None:
    server = redis_factory()
    client = raw(server)
    populate(client, cache=10)
    env = process_cli(tmp_path, server)
    before = all_keys(client)

    refused = env.run("--yes", "keys", "purge", "--category", "session")
    assert refused.returncode == 3
    assert "not rebuildable" in refused.stderr
    assert "--include-critical session" in refused.stderr

    unknown = env.run("--yes", "keys", "purge", "--category", "sessions")
    assert unknown.returncode == 2
    assert "bullmq, session, ratelimit, cache, pubsub" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 2  # error + HINT

    missing = env.run("keys", "purge")
    assert missing.returncode == 2
    assert "HINT:" in missing.stderr

    # Named explicitly: the plan asks to type the name; no terminal and no --yes: refused.
    named = env.run("keys", "purge", "--include-critical", "session")
    assert named.returncode == 3
    assert "DELETES DATA THAT IS NOT REBUILDABLE" in named.stdout
    plan = json.loads(
        env.run("--dry-run", "--json", "keys", "purge", "--include-critical", "session").stdout
    )["plan"]
    assert plan["confirm"] == "typed"
    assert all_keys(client) == before
    assert env.journal() == []

    only_yes = env.run("--yes", "keys", "purge", "--include-critical", "session")
    assert only_yes.returncode == 3  # a typed confirmation needs the extra flag too
    assert all_keys(client) == before

    allowed = env.run(
        "--yes", "keys", "purge", "--include-critical", "session", "--i-understand-data-loss"
    )
    assert allowed.returncode == 0, allowed.stderr
    assert before - all_keys(client) == {f"session:{i}".encode() for i in range(50)} | {
        b"session:cache:4"
    }


def test_walks_report_progress_on_stderr_without_a_terminal(
    tmp_path: Path, redis_factory: RedisFactory
) -> None:
    server = redis_factory()
    client = raw(server)
    populate(client, cache=2500)
    env = process_cli(tmp_path, server)
    done = env.run("--yes", "keys", "purge", "--category", "cache")  # stdout is a pipe
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("progress: ")]
    labels = {line.split(": ")[1] for line in lines}
    # Two walks: the plan's count per category and the purge (its evidence is DBSIZE).
    assert labels == {"plan", "purge cache"}, done.stderr
    # The first report of a walk is printed at once, its end when it ends.
    assert any(line.startswith("progress: purge cache: 2,501 of 2,501") for line in lines), lines
    assert not any(line.startswith("progress: ") for line in done.stdout.splitlines())
    stats = env.run("keys", "stats")
    assert any(line.startswith("progress: scan: ") for line in stats.stderr.splitlines())
    quiet = env.run("--json", "keys", "stats")  # --json: one document, no chatter
    assert "progress: " not in quiet.stderr


def test_progress_lines_every_interval(capsys: pytest.CaptureFixture[str]) -> None:
    with walk_progress(True, interval=0.0) as report:
        assert report is not None
        for done in range(0, 5001, 1000):
            report("walk", done, 5000)
        report("open", 7, None)
    every = capsys.readouterr().err.splitlines()
    assert every[:6] == [
        f"progress: walk: {done:,} of 5,000 ({done // 50} %), {every[i].rsplit(', ', 1)[1]}"
        for i, done in enumerate(range(0, 5001, 1000))
    ]
    assert every[6].startswith("progress: open: 7 so far, ")
    assert len(every) == 7
    with walk_progress(True, interval=3600.0) as report:
        assert report is not None
        for done in range(0, 5001, 1000):
            report("walk", done, 5000)
        report("open", 7, None)
        report("open", 9, None)
    sparse = [line.rsplit(", ", 1)[0] for line in capsys.readouterr().err.splitlines()]
    # The first line at once, the end of each walk, nothing in between.
    assert sparse == [
        "progress: walk: 0 of 5,000 (0 %)",
        "progress: walk: 5,000 of 5,000 (100 %)",
        "progress: open: 7 so far",
        "progress: open: 9 so far",
    ]
