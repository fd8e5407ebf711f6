"""bullmq/schedulers.py on a real Redis: the three kinds of member BullMQ v5 keeps in a
queue's `repeat` set (job schedulers are registered by real Node BullMQ in
tests/node_interop/test_interop_schedulers.py), and the expected-scheduler check."""

from __future__ import annotations

from redis_runbook.bullmq.keys import QueueRef
from redis_runbook.bullmq.schedulers import Expected, list_schedulers, missing_schedulers
from redis_runbook.lab.server import RedisServer
from tests.support.servers import plain_client


def test_a_legacy_repeatable_job_is_read_from_its_member(redis_server: RedisServer) -> None:
    """BullMQ <= 3.0 kept `name:jobId:endDate:tz:pattern` as the member, with no hash;
    v5's repeatable jobs (queue.add with repeat) an md5 member with a hash without `ic`."""
    client = plain_client(redis_server)
    client.zadd("bull:old:repeat", {"digest::1900000000000:Europe/Bucharest:0 9 * * 1-5": 5})
    client.zadd("bull:old:repeat", {"9f0c": 7})
    client.hset("bull:old:repeat:9f0c", mapping={"name": "sweep", "every": "30000"})
    old = QueueRef("bull", "old")
    got = {s.id: s for s in list_schedulers(client, [old])[old]}
    legacy = got["digest::1900000000000:Europe/Bucharest:0 9 * * 1-5"]
    assert (legacy.kind, legacy.name, legacy.pattern, legacy.tz, legacy.next_ms) == (
        "legacy", "digest", "0 9 * * 1-5", "Europe/Bucharest", 5,
    )  # fmt: skip
    assert legacy.end_date_ms == 1_900_000_000_000
    client.zadd("bull:old:repeat", {"hash-gone": 9})
    again = {s.id: s for s in list_schedulers(client, [old])[old]}
    assert again["hash-gone"].kind == "scheduler"
    assert (again["hash-gone"].name, again["hash-gone"].schedule) == (None, "-")
    repeatable = got["9f0c"]
    assert (repeatable.kind, repeatable.name, repeatable.every) == ("repeatable", "sweep", 30000)


def test_missing_schedulers_needs_no_queue(redis_server: RedisServer) -> None:
    """After an emergency start the queue itself is gone: its schedulers are missing."""
    client = plain_client(redis_server)
    client.zadd("{app}:mail:repeat", {"digest": 1})
    here = Expected("{app}", "mail", "digest")
    gone = Expected("{app}", "mail", "weekly")
    nowhere = Expected("bull", "absent", "x")
    assert missing_schedulers(client, [here, gone, nowhere]) == [gone, nowhere]
    assert missing_schedulers(client, []) == []
    assert gone.display == "{app}:mail/weekly"
