"""Stale active jobs (seed §5.2, done right): BullMQ's definition — the id is in
`active` and its lock key is gone — moved back to the head of `wait` (or `paused`
for a paused v5 queue) by our own Lua script, the lock re-checked inside the script
so that a job a worker still runs is never touched (bullmq.md §11.2).

Workers change `active` at both ends while we read it: a fetch pushes at the head,
a finished job is LREMed from wherever it is. Reading it by index from the head
(LRANGE i i+999) skips ids at chunk boundaries and reads others twice, so:
- `survey` reads it from the tail, the end nobody pushes at, classifying each chunk's
  ids in the same atomic read-only script, and finds where it stopped by the ids it
  already read (ids never overtake each other in a list); counts are exact;
- `recover_pass` never reads ids to pass them back: the script takes the tail, moves
  it (stale) or rotates it to the head (anything else), so a pass of LLEN ids sees
  every id that was there when it began, with O(1) work per id (no LREM scan).

The seed's moveToFailed + retry moves nothing (Lock mismatch / Missing lock, then
"not in the failed state"); BullMQ's own stalled checker needs a healthy worker and
fails a job on its second stall even with attempts left."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import redis

from redis_runbook.bullmq.counts import ActiveSplit
from redis_runbook.bullmq.keys import QueueRef
from redis_runbook.defaults import STALE_BATCH

#: Milliseconds of work after which a script call stops early (the rest is the next
#: call's): bounds how long one call blocks Redis (issue 12 item 3: goal < 25 ms).
CALL_BUDGET_MS = 8
CHUNK = 1000
#: How far back (in ids) a survey chunk re-reads to find where the last one ended
#: (up to 4x this after ids left the part already read; beyond, it starts again).
OVERLAP = 200
DEFA = "job stalled more than allowable limit"
_LUA = resources.files("redis_runbook.bullmq").joinpath("lua")
SCRIPT = _LUA.joinpath("recover_stale.lua").read_text()
READ_SCRIPT = _LUA.joinpath("read_active.lua").read_text()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class Survey:
    """One consistent read of a queue's active list: every id once, classified by
    its lock when it was read."""

    split: ActiveSplit = field(default_factory=ActiveSplit)
    stale: list[str] = field(default_factory=list)
    immortal: list[str] = field(default_factory=list)
    orphan: list[str] = field(default_factory=list)
    #: stale (and immortal) ids one more counted stall would fail (BullMQ's `defa`)
    would_fail: list[str] = field(default_factory=list)
    #: False when the list kept growing faster than it was read and the walk stopped
    complete: bool = True


def _read_window(
    client: redis.Redis, queue: QueueRef, first: int, last: int, max_stalled: int | None
) -> list[tuple[str, str, int]]:
    keys = [queue.key("active"), queue.key("repeat")]
    args: list[str | int] = [queue.base, first, last, "" if max_stalled is None else max_stalled]
    reply: Any = client.register_script(READ_SCRIPT)(keys=keys, args=args)  # EVALSHA
    return [
        (_text(reply[i]), _text(reply[i + 1]), int(reply[i + 2])) for i in range(0, len(reply), 3)
    ]


def survey(
    client: redis.Redis,
    queue: QueueRef,
    *,
    max_stalled: int | None = None,
    chunk: int = CHUNK,
    overlap: int = OVERLAP,
    max_rounds: int | None = None,
) -> Survey:
    """Read `active` from the tail in chunks of `chunk` ids, each classified in one
    atomic read-only script. `max_stalled` also tells which stale jobs one more counted
    stall would fail. Read-only (safe on a replica, changes nothing)."""
    result = Survey()
    seen: set[str] = set()
    read = 0  # positions 1..read (from the tail) were read, as the list stood then
    base_overlap = overlap
    rounds = 0
    limit = max_rounds or 20 + 8 * (int(client.llen(queue.key("active"))) // chunk)  # type: ignore[arg-type]
    while True:
        rounds += 1
        if rounds > limit:
            result.complete = False
            return result
        first, last = max(1, read + 1 - overlap), read + chunk
        window = _read_window(client, queue, first, last, max_stalled)
        if first > 1 and (not window or window[0][0] not in seen):
            # More ids than the overlap left the part already read (finished jobs):
            # the first unread id may lie below this window. Look further back, or
            # start again from the tail (ids already seen are skipped) rather than
            # read one window large enough to block Redis.
            overlap *= 4
            if overlap > 4 * base_overlap:
                read, overlap = 0, base_overlap
            continue
        # Ids already read form the tail end of the list; the first one not seen
        # starts the unread part.
        start = 0
        while start < len(window) and window[start][0] in seen:
            start += 1
        for job_id, kind, extra in window[start:]:
            if job_id in seen:
                continue  # re-added at the head after it was read
            seen.add(job_id)
            _count(result, job_id, kind, extra)
        if len(window) < last - first + 1:
            return result  # the window reached the head: every id was read
        read = last
        overlap = base_overlap


def _count(result: Survey, job_id: str, kind: str, extra: int) -> None:
    split = result.split
    if kind == "locked":
        split.locked += 1
        split.max_lock_ttl_ms = max(split.max_lock_ttl_ms, extra)
        return
    if kind == "orphan":
        split.orphan += 1
        result.orphan.append(job_id)
        return
    if kind == "stale":
        split.stale += 1
        result.stale.append(job_id)
    else:
        split.immortal += 1
        result.immortal.append(job_id)
    if extra:
        result.would_fail.append(job_id)


@dataclass
class PassResult:
    """What recovery passes did to one queue."""

    queue: QueueRef
    examined: int = 0
    moved: int = 0
    failed: list[str] = field(default_factory=list)
    immortal: set[str] = field(default_factory=set)
    orphan: set[str] = field(default_factory=set)
    calls: int = 0
    max_call_ms: float = 0.0


@dataclass
class CallResult:
    """One script call."""

    examined: int
    moved: int
    locked: int
    remaining: int
    timed_out: bool
    failed: list[str]
    immortal: list[str]
    orphan: list[str]


def recover_call(
    client: redis.Redis,
    queue: QueueRef,
    budget: int,
    *,
    count_as_stall: bool = False,
    break_immortal: bool = False,
    max_stalled: int = 1,
    budget_ms: float = CALL_BUDGET_MS,
) -> CallResult:
    """Run the script once: examine up to `budget` ids from the tail of `active`,
    stopping early after `budget_ms` of work."""
    keys = [queue.key(s) for s in ("active", "wait", "paused", "meta", "marker", "events",
                                   "stalled", "repeat")]  # fmt: skip
    args: list[str | int | float] = [queue.base, "1" if count_as_stall else "0", queue.layout,
            "1" if break_immortal else "0", max_stalled, budget, budget_ms]  # fmt: skip
    reply: Any = client.register_script(SCRIPT)(keys=keys, args=args)  # EVALSHA
    notes: dict[str, list[str]] = {"failed": [], "immortal": [], "orphan": []}
    for entry in reply[5:]:
        kind, _, job_id = _text(entry).partition(":")
        notes[kind].append(job_id)
    return CallResult(int(reply[0]), int(reply[1]), int(reply[2]), int(reply[3]),
                      bool(int(reply[4])), notes["failed"], notes["immortal"],
                      notes["orphan"])  # fmt: skip


def recover_pass(
    client: redis.Redis,
    queue: QueueRef,
    *,
    count_as_stall: bool = False,
    break_immortal: bool = False,
    max_stalled: int = 1,
    batch: int = STALE_BATCH,
    result: PassResult | None = None,
    on_call: Callable[[PassResult, CallResult, float], None] | None = None,
) -> PassResult:
    """One walk over `active` as long as it is now, `batch` ids per script call:
    every stale job in it is moved. `on_call(result, call, ms)` after each call."""
    result = result or PassResult(queue)
    total = int(client.llen(queue.key("active")))  # type: ignore[arg-type]
    done = 0
    while done < total:
        budget = min(batch, total - done)
        began = time.perf_counter()
        call = recover_call(
            client, queue, budget, count_as_stall=count_as_stall,
            break_immortal=break_immortal, max_stalled=max_stalled,
        )  # fmt: skip
        elapsed_ms = (time.perf_counter() - began) * 1000
        done += call.examined
        result.examined += call.examined
        result.moved += call.moved
        result.failed += call.failed
        result.immortal.update(call.immortal)
        result.orphan.update(call.orphan)
        result.calls += 1
        result.max_call_ms = max(result.max_call_ms, elapsed_ms)
        if on_call:
            on_call(result, call, elapsed_ms)
        if call.examined < budget and not call.timed_out:
            break  # the list is shorter than what is left to examine: all seen
    return result
