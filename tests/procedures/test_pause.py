"""`queues pause|resume` through the CLI on a real Redis: the journal is the record of
the queues this tool paused, so `resume --all` resumes those and never a queue someone
else paused (before, or again after a resume by hand); bad input and a replica change
nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis

from redis_runbook.bullmq.keys import QueueRef
from redis_runbook.bullmq.pause import set_paused
from redis_runbook.journal import Journal
from redis_runbook.lab.server import RedisServer
from redis_runbook.ports import free_port
from redis_runbook.procedures.pause import LEDGER, paused_by_runbook
from tests.support.cli import run_cli, target_env
from tests.support.servers import plain_client


def make_queues(client: redis.Redis, *names: str) -> None:
    """v5 queues as any add leaves them: meta with opts.maxLenEvents, jobs in wait."""
    for name in names:
        client.hset(f"bull:{name}:meta", "opts.maxLenEvents", "10000")
        client.rpush(f"bull:{name}:wait", f"{name}-1", f"{name}-2")


def paused(client: redis.Redis, *names: str) -> dict[str, bool]:
    return {n: bool(client.hexists(f"bull:{n}:meta", "paused")) for n in names}


def by_hand(client: redis.Redis, name: str, pause: bool) -> None:
    """What an operator's Node queue.pause() / resume() does (the same script)."""
    assert set_paused(client, QueueRef("bull", name), pause).outcome in ("paused", "resumed")


def ledger(tmp_path: Path) -> list[tuple[str, str]]:
    entries = Journal.in_dir(tmp_path / "state").entries()
    return [(e["figures"]["queue"], e["figures"][LEDGER])
            for e in entries if LEDGER in e["figures"]]  # fmt: skip


def cli(env: dict[str, str], *args: str) -> Any:
    result = run_cli("--json", "--yes", "queues", *args, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_the_ledger_follows_the_journal_in_order() -> None:
    def entry(queue: str, kind: str, target: str = "redis://t") -> dict[str, Any]:
        return {"target": target, "figures": {LEDGER: kind, "queue": queue, "event_id": kind}}

    entries = [
        entry("a", "paused"), entry("b", "paused"), entry("c", "paused", "redis://other"),
        {"target": "redis://t", "figures": {}}, entry("a", "resumed"), entry("b", "released"),
        entry("a", "paused"),
    ]  # fmt: skip
    assert paused_by_runbook(entries, "redis://t") == {"a": "paused"}
    assert paused_by_runbook(entries, "redis://other") == {"c": "paused"}


def test_resume_all_resumes_exactly_what_pause_all_paused(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    client = plain_client(redis_server)
    env = target_env(tmp_path, redis_server)
    make_queues(client, "a", "b", "c", "d")
    by_hand(client, "c", pause=True)  # an operator's pause, before ours

    first = cli(env, "pause", "--all")["pause"]
    assert (first["done"], first["left_alone"]) == (["a", "b", "d"], ["c"])
    assert paused(client, "a", "b", "c", "d") == dict.fromkeys("abcd", True)
    assert client.lrange("bull:a:paused", 0, -1) == ["a-1", "a-2"]
    # Two pauses in a row: the second finds nothing running and records nothing.
    second = cli(env, "pause", "--all")["pause"]
    assert (second["done"], second["left_alone"]) == ([], ["a", "b", "c", "d"])
    assert ledger(tmp_path) == [("a", "paused"), ("b", "paused"), ("d", "paused")]

    by_hand(client, "a", pause=False)  # resumed by hand meanwhile
    by_hand(client, "d", pause=False)  # resumed by hand, and paused again on purpose
    by_hand(client, "d", pause=True)
    done = cli(env, "resume", "--all")
    report = done["pause"]
    assert report["done"] == ["b"]
    assert sorted(report["forgotten"]) == ["a", "d"]
    assert sorted(report["left_alone"]) == ["c", "d"]
    assert paused(client, "a", "b", "c", "d") == {"a": False, "b": False, "c": True, "d": True}
    assert client.lrange("bull:b:wait", 0, -1) == ["b-1", "b-2"]
    notes = " ".join(done["plan"]["notes"])
    assert "c: paused, not by redis-runbook: left paused" in notes
    assert "redis-runbook queues resume --queue d" in notes
    # Nothing is ours any more: a second resume --all does nothing.
    again = cli(env, "resume", "--all")
    assert (again["pause"]["planned"], again["plan"]["steps"]) == ([], [])
    assert paused(client, "c", "d") == {"c": True, "d": True}

    # Named, a queue is resumed whoever paused it.
    named = cli(env, "resume", "--queue", "c")
    assert named["pause"]["done"] == ["c"]
    assert "c: paused, not by redis-runbook; resumed because you named it" in named["plan"]["notes"]


def test_dry_run_changes_nothing(tmp_path: Path, redis_server: RedisServer) -> None:
    client = plain_client(redis_server)
    env = target_env(tmp_path, redis_server)
    make_queues(client, "a")
    result = run_cli("--json", "--dry-run", "queues", "pause", "--all", env=env)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["dry_run"]
    assert document["pause"]["planned"] == ["a"]
    assert [s["title"] for s in document["plan"]["steps"]] == ["a: pause"]
    assert paused(client, "a") == {"a": False}
    assert ledger(tmp_path) == []


def test_a_conflicting_queue_fails_its_step_and_keeps_both_lists(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    client = plain_client(redis_server)
    env = target_env(tmp_path, redis_server)
    make_queues(client, "a")
    cli(env, "pause", "--queue", "a")
    client.rpush("bull:a:wait", "v6-pushed")  # a v6-layout writer, while paused
    result = run_cli("--yes", "queues", "resume", "--all", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "both wait (1) and paused (2) hold jobs" in result.stderr
    assert client.lrange("bull:a:wait", 0, -1) == ["v6-pushed"]
    assert client.lrange("bull:a:paused", 0, -1) == ["a-1", "a-2"]
    assert ledger(tmp_path) == [("a", "paused")]  # still ours: resume --all tries again


@pytest.mark.parametrize(
    ("args", "message", "hint"),
    [
        (
            ("pause",),
            "queues pause: name the queues with --queue NAME, or give --all",
            "redis-runbook queues pause --all",
        ),
        (
            ("resume", "--all", "--queue", "a"),
            "queues resume: give --queue or --all, not both",
            "redis-runbook queues resume --all",
        ),
        (
            ("pause", "--queue", "nope"),
            "unknown queue(s) nope under prefix(es) bull; known: a",
            "redis-runbook queues status",
        ),
        (("resume", "--queue", "nope"), "unknown queue(s) nope", "redis-runbook queues status"),
    ],
    ids=["neither", "both", "unknown pause", "unknown resume"],
)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    tmp_path: Path, redis_server: RedisServer, args: tuple[str, ...], message: str, hint: str
) -> None:
    client = plain_client(redis_server)
    env = target_env(tmp_path, redis_server)
    make_queues(client, "a")
    before = {k: client.dump(k) for k in client.scan_iter()}
    result = run_cli("--yes", "queues", *args, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert lines[1].startswith("HINT: ")
    assert hint in lines[1]
    assert {k: client.dump(k) for k in client.scan_iter()} == before
    assert ledger(tmp_path) == []


def test_refused_on_a_replica(tmp_path: Path, redis_server: RedisServer) -> None:
    client = plain_client(redis_server)
    make_queues(client, "a")
    client.execute_command("REPLICAOF", "127.0.0.1", free_port())  # keeps its data
    result = run_cli("--yes", "queues", "pause", "--all", env=target_env(tmp_path, redis_server))
    assert result.returncode == 3, result.stdout + result.stderr
    assert "the target is a slave" in result.stderr
    assert paused(client, "a") == {"a": False}
    assert ledger(tmp_path) == []
