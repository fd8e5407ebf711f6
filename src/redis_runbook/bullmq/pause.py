"""BullMQ v5's global pause, as Node's `queue.pause()` / `queue.resume()` do it
(pause-7.lua: RENAME wait<->paused, meta `paused`, the marker, a `paused` / `resumed`
event), run by our own script `lua/pause.lua` that adds two guards: it acts only on a
change, and it never lets a RENAME overwrite a list that holds jobs (bullmq.md §4).

Only v5-layout queues: v6 keeps a paused queue's jobs in `wait`, and mixing the two
layouts loses jobs on resume (bullmq.md §9)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

import redis

from redis_runbook.bullmq.keys import QueueRef

SCRIPT = resources.files("redis_runbook.bullmq").joinpath("lua").joinpath("pause.lua").read_text()
#: Stream entries read per XRANGE while looking for later pause events.
EVENTS_PAGE = 1000

Outcome = Literal["paused", "resumed", "unchanged", "conflict"]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class PauseState:
    """Whether a queue is paused (meta `paused`, as Node's isPaused()) and the
    lengths of its two lists."""

    queue: QueueRef
    paused: bool
    wait: int
    paused_list: int


@dataclass(frozen=True)
class PauseResult:
    """What one script call did: the outcome, the id of the event it added ("" when
    it changed nothing) and the list lengths it found."""

    queue: QueueRef
    outcome: Outcome
    event_id: str
    wait: int
    paused_list: int


def pause_state(client: redis.Redis, queue: QueueRef) -> PauseState:
    """Read-only: meta `paused`, LLEN wait, LLEN paused in one round trip."""
    pipe = client.pipeline(transaction=False)
    pipe.hexists(queue.key("meta"), "paused")
    pipe.llen(queue.key("wait"))
    pipe.llen(queue.key("paused"))
    paused, wait, paused_list = pipe.execute()
    return PauseState(queue, bool(paused), int(wait), int(paused_list))


def set_paused(client: redis.Redis, queue: QueueRef, pause: bool) -> PauseResult:
    """Pause (`pause=True`) or resume the queue atomically; see lua/pause.lua for the
    outcomes. Raises ValueError for a v6-layout queue (never touched)."""
    if queue.layout != "v5":
        raise ValueError(f"{queue.display} uses the BullMQ v6 layout")
    keys = [queue.key(s) for s in ("wait", "paused", "meta", "prioritized", "events",
                                   "delayed", "marker")]  # fmt: skip
    reply: Any = client.register_script(SCRIPT)(
        keys=keys, args=["paused" if pause else "resumed"]
    )  # EVALSHA
    outcome: Any = _text(reply[0])
    return PauseResult(queue, outcome, _text(reply[1]), int(reply[2]), int(reply[3]))


def pause_events_since(client: redis.Redis, queue: QueueRef, event_id: str) -> list[str]:
    """The `paused` / `resumed` events of the queue's stream after `event_id`, oldest
    first, as "<event> <id>": someone paused or resumed it since. Read-only, paged.
    The stream is trimmed (opts.maxLenEvents): events older than its first entry are
    gone, so an empty answer proves nothing about them."""
    found: list[str] = []
    start = f"({event_id}"
    while True:
        entries: Any = client.xrange(queue.key("events"), min=start, max="+", count=EVENTS_PAGE)
        for entry_id, fields in entries:
            event = _text(fields.get(b"event", fields.get("event", b"")))
            if event in ("paused", "resumed"):
                found.append(f"{event} {_text(entry_id)}")
        if len(entries) < EVENTS_PAGE:
            return found
        start = f"({_text(entries[-1][0])}"


def _stream_id(text: str) -> tuple[int, int]:
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def pause_event_kept(client: redis.Redis, queue: QueueRef, event_id: str) -> bool | None:
    """Whether the queue's events stream still holds the event `event_id`: True; False
    when it does not although the stream reaches back that far (or is empty): the
    data was replaced since (a restore, an emergency start); None when the stream was
    trimmed past it (cannot tell). Read-only."""
    key = queue.key("events")
    if client.xrange(key, min=event_id, max=event_id, count=1):
        return True
    first: Any = client.xrange(key, count=1)
    if not first:
        return False
    return False if _stream_id(_text(first[0][0])) <= _stream_id(event_id) else None


def touched_since(client: redis.Redis, queue: QueueRef, event_id: str) -> str:
    """Why a queue paused by our event `event_id` is not ours any more ("" when
    nothing says so): someone paused or resumed it since, or its data was replaced."""
    later = pause_events_since(client, queue, event_id)
    if later:
        return f"paused and resumed by someone else since ({', '.join(later)})"
    if pause_event_kept(client, queue, event_id) is False:
        return "its data was replaced since (the paused event is not in its events stream)"
    return ""
