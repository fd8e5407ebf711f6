"""Keys and memory per category estimated from RANDOMKEY samples (issue 15 goal 3):
every estimate carries an error bar, and the truth lies within it.

The 95 % bars would let one figure in twenty fall outside by chance; the tests
compare with three bars (about 4.4 standard errors: once in 100,000), so they
fail on a wrong estimator or a wrong bar, not on luck."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import redis

from redis_runbook.config import Config
from redis_runbook.keyspace import OTHER, category_stats
from redis_runbook.keyspace_estimate import Estimate, estimate
from redis_runbook.procedures import purge
from redis_runbook.procedures.context import ProcedureContext
from redis_runbook.procedures.purge import EXACT_WALK_MAX_KEYS, measure_categories
from tests.support.cli import process_cli
from tests.support.servers import RedisFactory, config_for, plain_client

CATEGORIES = Config().categories
TRUE_KEYS = {"cache": 30_000, "session": 8_000, "ratelimit": 2_000, OTHER: 10_000}
SAMPLES = 2_000


def fill(client: redis.Redis) -> None:
    """Known keys per category: cache strings of 200 bytes, a third with a TTL;
    sessions as small hashes; rate limits with a TTL; uncategorised keys."""
    pipe = client.pipeline(transaction=False)
    for i in range(TRUE_KEYS["cache"]):
        pipe.set(f"cache:{i}", b"c" * 200, ex=3_600 if i % 3 == 0 else None)
    for i in range(TRUE_KEYS["session"]):
        pipe.hset(f"session:{i}", mapping={"user": str(i), "token": "t" * 32})
    for i in range(TRUE_KEYS["ratelimit"]):
        pipe.set(f"ratelimit:{i}", 1, ex=3_600)
    for i in range(TRUE_KEYS[OTHER]):
        pipe.set(f"app:{i}", i)
    pipe.execute()


def within(figure: Estimate, truth: float) -> bool:
    return abs(figure.value - truth) <= 3 * figure.error


def test_estimates_hold_the_truth_within_their_error_bars(redis_factory: RedisFactory) -> None:
    server = redis_factory(settings={"maxmemory": "0"})
    client = plain_client(server, decode_responses=False)
    fill(client)
    exact = category_stats(client, CATEGORIES, sample=1_000_000)  # MEMORY USAGE of every key
    found = estimate(client, CATEGORIES, samples=SAMPLES)

    assert found.total == sum(TRUE_KEYS.values())
    assert found.samples == SAMPLES
    for name, keys in TRUE_KEYS.items():
        figure = found.get(name)
        assert figure.sampled > 0, name
        assert 0 < figure.keys.error < 0.05 * found.total, (name, figure.keys)
        assert within(figure.keys, keys), (name, figure.keys, keys)
        truth = exact.get(name).estimated_bytes  # every key measured: the exact sum
        assert within(figure.memory, truth), (name, figure.memory, truth)
    cache = found.get("cache")
    assert within(cache.with_ttl, TRUE_KEYS["cache"] / 3), cache.with_ttl
    assert within(found.get("ratelimit").with_ttl, TRUE_KEYS["ratelimit"])
    assert found.get("session").with_ttl.value == 0


def test_a_category_never_sampled_is_zero_with_a_bar_not_absent(
    redis_factory: RedisFactory,
) -> None:
    server = redis_factory()
    client = plain_client(server, decode_responses=False)
    client.mset({f"cache:{i}": b"c" for i in range(5_000)} | {"bull:q:1": b"1"})
    found = estimate(client, CATEGORIES, samples=500)
    bullmq = found.get("bullmq")
    # One key in 5,001 may or may not be drawn; either way the bar covers it.
    assert within(bullmq.keys, 1)
    session = found.get("session")
    assert (session.keys.value, session.sampled) == (0, 0)
    assert session.keys.error == -(-3 * 5_001 // found.samples)  # the rule of three


def test_an_empty_database_is_estimated_without_a_sample(redis_factory: RedisFactory) -> None:
    client = plain_client(redis_factory(), decode_responses=False)
    found = estimate(client, CATEGORIES)
    assert (found.total, found.samples, found.categories) == (0, 0, {})
    assert found.get("cache").keys == Estimate(0, 0)


def test_keys_stats_estimate_cli(tmp_path: Path, redis_factory: RedisFactory) -> None:
    """`keys stats --estimate`: the same categories as the walk, each figure with its
    bar, the truth within it; no SCAN sent (the server's command stats say so)."""
    server = redis_factory(settings={"maxmemory": "0"})
    client = plain_client(server, decode_responses=False)
    fill(client)
    client.config_resetstat()
    env = process_cli(tmp_path, server)
    done = env.run("keys", "stats", "--estimate", "--random-keys", "1000", "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert (document["estimate"], document["total"]) == (True, sum(TRUE_KEYS.values()))
    assert document["random_keys"] == 1000
    by_name = {c["name"]: c for c in document["categories"]}
    assert set(by_name) == {c.name for c in CATEGORIES} | {OTHER}
    for name, keys in TRUE_KEYS.items():
        figure = Estimate(by_name[name]["keys"], by_name[name]["keys_error"])
        assert figure.error > 0, (name, figure)
        assert within(figure, keys), (name, figure)
    assert "cmdstat_scan" not in client.info("commandstats")
    human = env.run("keys", "stats", "--estimate")
    assert human.returncode == 0, human.stderr
    assert "±" in human.stdout
    assert "cache:*" in human.stdout


FILL_LUA = """
for i = tonumber(ARGV[2]), tonumber(ARGV[3]) do
  redis.call('SET', ARGV[1] .. i, 'v')
end
"""


def test_a_large_keyspace_is_planned_from_an_estimate_and_purged_in_one_walk(
    tmp_path: Path, redis_factory: RedisFactory
) -> None:
    """Above EXACT_WALK_MAX_KEYS the purge plan estimates each category (with its
    error bar) instead of walking every key; the purge still deletes exactly its
    category, and its one walk is the only SCAN."""
    server = redis_factory(settings={"maxmemory": "0"})
    client = plain_client(server, decode_responses=False)
    cache, sessions = EXACT_WALK_MAX_KEYS, 60_000
    for prefix, count in (("cache:", cache), ("session:", sessions)):
        for first in range(0, count, 50_000):
            client.eval(FILL_LUA, 0, prefix, first, min(first + 50_000, count) - 1)
    env = process_cli(tmp_path, server)
    plan = json.loads(env.run("--dry-run", "--json", "keys", "purge", "--category", "cache").stdout)
    title = plan["plan"]["steps"][1]["title"]
    match = re.search(r"purge cache \(cache:\*\): ≈ ([\d,]+) ± ([\d,]+) keys", title)
    assert match, title
    assert within(Estimate(*(int(g.replace(",", "")) for g in match.groups())), cache)

    client.config_resetstat()
    done = env.run("--yes", "--json", "keys", "purge", "--category", "cache")
    assert done.returncode == 0, done.stderr
    assert client.dbsize() == sessions
    assert client.exists(b"session:0", b"session:59999") == 2
    scans = int(client.info("commandstats")["cmdstat_scan"]["calls"])
    # One walk: the purge's own SCAN MATCH, about one call per 1,000 slots.
    assert scans <= (cache + sessions) // 1_000 + 50, scans


@pytest.mark.parametrize("walked", [True, False])
def test_a_plan_measures_its_categories_with_one_dbsize(
    redis_factory: RedisFactory, monkeypatch: pytest.MonkeyPatch, walked: bool
) -> None:
    """The DBSIZE that chooses between the walk and the estimate is the one the
    walk's progress total or the estimate's N uses: Redis is asked once."""
    server = redis_factory()
    client = plain_client(server)
    client.mset({f"cache:{i}": i for i in range(100)})
    if not walked:
        monkeypatch.setattr(purge, "EXACT_WALK_MAX_KEYS", 99)  # 100 keys: estimated
    client.config_resetstat()
    stats = measure_categories(ProcedureContext(config_for(server), read_only=True))
    assert stats.get("cache").keys == 100
    assert stats.scanned == (100 if walked else 0)  # walked, or estimated (no SCAN)
    assert client.info("commandstats")["cmdstat_dbsize"]["calls"] == 1
    client.close()
