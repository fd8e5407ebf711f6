"""A rebuildable category can never take BullMQ or other non-rebuildable data with
it (issue 11 item 3): the config refuses a rebuildable pattern that can match keys
of a non-rebuildable category or of a `[bullmq] prefixes` entry, and the purge
itself keeps every such key whatever the config order — on real servers."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import redis

from redis_runbook.config import Category, Config, load_config
from redis_runbook.errors import EXIT_USAGE, ConfigError
from redis_runbook.keyspace_purge import purge
from redis_runbook.lab.server import RedisServer
from tests.support.cli import process_cli
from tests.support.servers import RedisFactory, plain_client

SCRATCH_FIRST = """
[[categories]]
name = "scratch"
pattern = "*"
rebuildable = true
persistence = "none"
priority = "low"

[[categories]]
name = "bullmq"
pattern = "bull:*"
priority = "critical"
"""

OWN = b"redis-runbook:lock"


def raw(server: RedisServer) -> redis.Redis:
    return plain_client(server, decode_responses=False)


def all_keys(client: redis.Redis) -> set[bytes]:
    return set(client.scan_iter(count=1000))


def populate(client: redis.Redis) -> dict[str, set[bytes]]:
    """BullMQ keys under two prefixes, sessions, scratch keys, and the tool's own."""
    groups: dict[str, set[bytes]] = {"bull": set(), "jobs": set(), "session": set(), "tmp": set()}
    pipe = client.pipeline(transaction=False)
    for i in range(120):
        for group, key in (
            ("bull", f"bull:q:{i}"),
            ("jobs", f"{{jobs}}:mail:{i}"),
            ("session", f"session:{i}"),
            ("tmp", f"tmp:{i}"),
        ):
            pipe.set(key, b"x")
            groups[group].add(key.encode())
    pipe.set(OWN, b"token")
    pipe.execute()
    return groups


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "runbook.toml"
    path.write_text(text)
    return path


def refusal(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.exit_code == EXIT_USAGE
    return str(caught.value)


def test_config_refuses_a_rebuildable_category_that_overlaps_a_critical_one(
    tmp_path: Path,
) -> None:
    message = refusal(write(tmp_path, SCRATCH_FIRST))
    assert str(tmp_path / "runbook.toml") in message
    assert "'scratch'" in message
    assert "'*'" in message
    assert "'bullmq'" in message
    assert "'bull:*'" in message

    # Whatever the order, and for any overlap of the globs, not only `*`.
    after = SCRATCH_FIRST.split("[[categories]]")
    message = refusal(write(tmp_path, "[[categories]]" + after[2] + "[[categories]]" + after[1]))
    assert "'scratch'" in message
    assert "'bullmq'" in message
    carve_out = (
        '[[categories]]\nname = "hot"\npattern = "cache:hot:*"\n\n'
        '[[categories]]\nname = "cache"\npattern = "c[a-z]che:*"\nrebuildable = true\n'
    )
    message = refusal(write(tmp_path, carve_out))
    assert "'cache'" in message
    assert "'c[a-z]che:*'" in message
    assert "'hot'" in message
    assert "'cache:hot:*'" in message

    # Disjoint globs are fine; so are the defaults, and overlapping rebuildable ones.
    fine = (
        '[[categories]]\nname = "bullmq"\npattern = "bull:*"\n\n'
        '[[categories]]\nname = "cache"\npattern = "cache:*"\nrebuildable = true\n\n'
        '[[categories]]\nname = "scratch"\npattern = "c?che:*"\nrebuildable = true\n\n'
        '[[categories]]\nname = "tmp"\npattern = "[^bs]*"\nrebuildable = true\n'
    )
    assert [c.name for c in load_config(write(tmp_path, fine), env={}).config.categories] == [
        "bullmq",
        "cache",
        "scratch",
        "tmp",
    ]
    Config()


def test_config_refuses_overlap_with_a_bullmq_prefix_it_forgot_to_declare(
    tmp_path: Path,
) -> None:
    only_scratch = (
        '[[categories]]\nname = "scratch"\npattern = "*"\nrebuildable = true\n\n'
        '[bullmq]\nprefixes = ["{jobs}"]\n'
    )
    message = refusal(write(tmp_path, only_scratch))
    assert str(tmp_path / "runbook.toml") in message
    assert "'scratch'" in message
    assert "'*'" in message
    assert "'{jobs}'" in message
    assert "'{jobs}:*'" in message
    narrow = only_scratch.replace('"*"', '"{j*"')
    assert "'{j*'" in refusal(write(tmp_path, narrow))
    fine = only_scratch.replace('"*"', '"tmp:*"')
    assert load_config(write(tmp_path, fine), env={}).config.categories[0].pattern == "tmp:*"


def test_cli_refuses_the_catch_all_config_and_deletes_nothing(
    tmp_path: Path, redis_factory: RedisFactory
) -> None:
    server = redis_factory()
    client = raw(server)
    populate(client)
    before = all_keys(client)
    env = process_cli(tmp_path, server, tomllib.loads(SCRATCH_FIRST))
    for args in (
        ("config", "validate"),
        ("--yes", "keys", "purge", "--category", "scratch"),
        ("--yes", "recover", "oom"),
    ):
        result = env.run(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert str(env.config) in result.stderr
        assert "scratch" in result.stderr
        assert "bullmq" in result.stderr
    assert all_keys(client) == before


def test_purge_keeps_critical_keys_whatever_the_order(redis_factory: RedisFactory) -> None:
    client = raw(redis_factory())
    groups = populate(client)
    scratch = Category(name="scratch", pattern="*", rebuildable=True)
    bullmq = Category(name="bullmq", pattern="bull:*", priority="critical")
    session = Category(name="session", pattern="session:*")
    # Not validated (built in code): the catch-all comes first and would claim everything.
    result = purge(client, scratch, categories=[scratch, bullmq, session])
    left = all_keys(client)
    assert left == groups["bull"] | groups["session"] | {OWN}
    assert result.deleted == len(groups["tmp"]) + len(groups["jobs"])
    assert "protect" in result.describe()


def test_purge_keeps_keys_under_bullmq_prefixes_the_categories_forgot(
    redis_factory: RedisFactory,
) -> None:
    client = raw(redis_factory())
    groups = populate(client)
    scratch = Category(name="scratch", pattern="*", rebuildable=True)
    result = purge(client, scratch, categories=[scratch], bullmq_prefixes=["bull", "{jobs}"])
    assert all_keys(client) == groups["bull"] | groups["jobs"] | {OWN}
    assert result.deleted == len(groups["session"]) + len(groups["tmp"])


def test_an_explicit_critical_purge_of_bullmq_still_works(redis_factory: RedisFactory) -> None:
    client = raw(redis_factory())
    groups = populate(client)
    categories = Config().categories
    bullmq = next(c for c in categories if c.name == "bullmq")
    session = next(c for c in categories if c.name == "session")
    # A critical category named explicitly keeps the BullMQ prefix's keys and the
    # other critical categories' keys ...
    wide = Category(name="wide", pattern="*", priority="high")
    purge(client, wide, categories=[wide, session], allow_not_rebuildable=True)
    assert all_keys(client) == groups["bull"] | groups["session"] | {OWN}
    # ... but the BullMQ category itself, named explicitly, can be purged.
    result = purge(client, bullmq, categories=categories, allow_not_rebuildable=True)
    assert result.deleted == len(groups["bull"])
    assert all_keys(client) == groups["session"] | {OWN}
