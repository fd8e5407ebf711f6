"""bullmq/pause.py: our pause script writes what BullMQ v5's pause-7.lua writes (the
official Python bullmq 2.x runs that very script: `Queue.pause()` / `resume()`), and
its guards change nothing where BullMQ would overwrite a list or re-pause a queue."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
from bullmq import Queue

from redis_runbook.bullmq.keys import QueueRef
from redis_runbook.bullmq.pause import (
    pause_event_kept,
    pause_events_since,
    pause_state,
    set_paused,
    touched_since,
)
from redis_runbook.lab.server import RedisServer
from tests.support.servers import plain_client


async def _fill(server: RedisServer, name: str) -> None:
    """Waiting, prioritized and delayed jobs, added by the official client."""
    queue = Queue(name, {"connection": {"host": "127.0.0.1", "port": server.port}})
    try:
        await queue.addBulk([{"name": "w", "data": {}, "opts": {"jobId": f"w-{i}"}}
                             for i in range(5)])  # fmt: skip
        await queue.add("p", {}, {"jobId": "p-0", "priority": 2})
        await queue.add("d", {}, {"jobId": "d-0", "delay": 3_600_000})
    finally:
        await queue.close()


async def _official(server: RedisServer, name: str, pause: bool) -> None:
    queue = Queue(name, {"connection": {"host": "127.0.0.1", "port": server.port}})
    try:
        await (queue.pause() if pause else queue.resume())
    finally:
        await queue.close()


def _layout(client: redis.Redis, name: str) -> dict[str, Any]:
    """What pause-7.lua touches, comparable across two queues."""
    base = f"bull:{name}:"
    events = client.xrevrange(base + "events", count=1)
    return {
        "wait": client.lrange(base + "wait", 0, -1),
        "paused": client.lrange(base + "paused", 0, -1),
        "meta.paused": client.hget(base + "meta", "paused"),
        "marker": client.zrange(base + "marker", 0, -1, withscores=True),
        "marker exists": client.exists(base + "marker"),
        "last event": events[0][1] if events else None,
        "events": client.xlen(base + "events"),
    }


def test_pause_and_resume_write_what_bullmq_writes(redis_server: RedisServer) -> None:
    client = plain_client(redis_server)
    for name in ("theirs", "ours"):
        asyncio.run(_fill(redis_server, name))
    ours = QueueRef("bull", "ours")

    asyncio.run(_official(redis_server, "theirs", pause=True))
    paused = set_paused(client, ours, pause=True)
    assert (paused.outcome, paused.wait, paused.paused_list) == ("paused", 5, 0)
    theirs_paused = _layout(client, "theirs")
    assert _layout(client, "ours") == theirs_paused
    assert theirs_paused["meta.paused"] == "1"
    assert len(theirs_paused["paused"]) == 5
    assert theirs_paused["last event"] == {"event": "paused"}
    assert pause_state(client, ours).paused

    asyncio.run(_official(redis_server, "theirs", pause=False))
    resumed = set_paused(client, ours, pause=False)
    assert (resumed.outcome, resumed.paused_list) == ("resumed", 5)
    assert _layout(client, "ours") == _layout(client, "theirs")
    assert _layout(client, "ours")["marker"] == [("0", 0.0)]
    assert pause_events_since(client, ours, paused.event_id) == [f"resumed {resumed.event_id}"]


def test_resume_with_only_delayed_jobs_sets_the_delay_marker_as_bullmq(
    redis_server: RedisServer,
) -> None:
    client = plain_client(redis_server)
    for name in ("theirs", "ours"):
        base = f"bull:{name}:"
        client.hset(base + "meta", mapping={"opts.maxLenEvents": 10000, "paused": 1})
        client.zadd(base + "delayed", {"d-1": 1_900_000_000_000 * 0x1000 + 1})
    asyncio.run(_official(redis_server, "theirs", pause=False))
    assert set_paused(client, QueueRef("bull", "ours"), pause=False).outcome == "resumed"
    assert _layout(client, "ours") == _layout(client, "theirs")
    assert _layout(client, "ours")["marker"][0][0] == "1"


def test_a_second_pause_or_resume_changes_nothing(redis_server: RedisServer) -> None:
    client = plain_client(redis_server)
    queue = QueueRef("bull", "q")
    client.hset("bull:q:meta", "opts.maxLenEvents", "10000")
    client.rpush("bull:q:wait", "1", "2")
    assert set_paused(client, queue, pause=True).outcome == "paused"
    before = _layout(client, "q")
    again = set_paused(client, queue, pause=True)
    assert (again.outcome, again.event_id) == ("unchanged", "")
    assert _layout(client, "q") == before  # no second `paused` event either
    assert set_paused(client, queue, pause=False).outcome == "resumed"
    assert set_paused(client, queue, pause=False).outcome == "unchanged"
    assert client.lrange("bull:q:wait", 0, -1) == ["1", "2"]


@pytest.mark.parametrize("pause", [True, False], ids=["pause", "resume"])
def test_a_rename_that_would_overwrite_jobs_changes_nothing(
    redis_server: RedisServer, pause: bool
) -> None:
    """A v6-layout writer pushed into `wait` while the queue was paused: BullMQ's
    resume would RENAME paused over it and lose those ids."""
    client = plain_client(redis_server)
    client.hset("bull:q:meta", "opts.maxLenEvents", "10000")
    if not pause:
        client.hset("bull:q:meta", "paused", "1")
    client.rpush("bull:q:wait", "w1")
    client.rpush("bull:q:paused", "p1")
    before = _layout(client, "q")
    result = set_paused(client, QueueRef("bull", "q"), pause=pause)
    assert (result.outcome, result.wait, result.paused_list) == ("conflict", 1, 1)
    assert _layout(client, "q") == before


def test_a_v6_queue_is_never_touched(redis_server: RedisServer) -> None:
    client = plain_client(redis_server)
    with pytest.raises(ValueError, match="v6"):
        set_paused(client, QueueRef("bull", "q", "v6"), pause=True)
    assert client.dbsize() == 0


def test_touched_since_tells_a_later_pause_and_replaced_data(redis_server: RedisServer) -> None:
    client = plain_client(redis_server)
    queue = QueueRef("bull", "q")
    client.hset("bull:q:meta", "opts.maxLenEvents", "10000")
    ours = set_paused(client, queue, pause=True).event_id
    assert touched_since(client, queue, ours) == ""
    assert pause_event_kept(client, queue, ours) is True
    set_paused(client, queue, pause=False)
    again = set_paused(client, queue, pause=True).event_id
    assert touched_since(client, queue, ours).startswith("paused and resumed by someone else")
    assert again in touched_since(client, queue, ours)
    # Trimmed past our event: cannot tell, so nothing says it is not ours.
    client.xtrim("bull:q:events", minid=again, approximate=False)
    assert pause_event_kept(client, queue, ours) is None
    # A restore brought back a stream older than our pause: not the data we paused.
    client.delete("bull:q:events")
    client.xadd("bull:q:events", {"event": "added"}, id="1-1")
    assert pause_event_kept(client, queue, ours) is False
    assert touched_since(client, queue, ours).startswith("its data was replaced")
