"""Stale active jobs (seed §5.2, done right): BullMQ's definition — the id is in
`active` and its lock key is gone — moved back to the head of `wait` (or `paused`
for a paused v5 queue) by our own Lua script, in batches, the lock re-checked inside
the script so that a job a worker still runs is never touched (bullmq.md §11.2).

The seed's moveToFailed + retry moves nothing (Lock mismatch / Missing lock, then
"not in the failed state"); BullMQ's own stalled checker needs a healthy worker and
fails a job on its second stall even with attempts left."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import redis

from redis_runbook.bullmq.keys import QueueRef

BATCH = 500
SCRIPT = resources.files("redis_runbook.bullmq").joinpath("lua/recover_stale.lua").read_text()


@dataclass
class StaleResult:
    """What one recovery pass did to one queue."""

    queue: QueueRef
    moved: int = 0
    skipped: dict[str, list[str]] = field(default_factory=dict)
    batches: int = 0
    max_batch_ms: float = 0.0

    def count(self, kind: str) -> int:
        """How many ids were left alone for `kind` (locked, immortal, orphan, gone)."""
        return len(self.skipped.get(kind, []))


def recover_batch(
    client: redis.Redis,
    queue: QueueRef,
    ids: Sequence[str],
    *,
    count_as_stall: bool = False,
    break_immortal: bool = False,
) -> tuple[int, list[str]]:
    """Run the script on one batch; returns (moved, ["kind:id", ...])."""
    keys = [queue.key(s) for s in ("active", "wait", "paused", "meta", "marker", "events",
                                   "stalled")]  # fmt: skip
    args = [queue.base, "1" if count_as_stall else "0", queue.layout,
            "1" if break_immortal else "0", *ids]  # fmt: skip
    reply: Any = client.eval(SCRIPT, len(keys), *keys, *args)
    moved = int(reply[0])
    entries = [e.decode() if isinstance(e, bytes) else str(e) for e in reply[1:]]
    return moved, entries


def recover_stale(
    client: redis.Redis,
    queue: QueueRef,
    candidates: Sequence[str],
    *,
    count_as_stall: bool = False,
    break_immortal: bool = False,
    batch: int = BATCH,
    on_batch: Callable[[StaleResult, int, float], None] | None = None,
) -> StaleResult:
    """Recover `candidates` (ids read as stale; each is re-checked in the script) in
    batches of `batch` ids. `on_batch(result, moved_in_batch, ms)` after each batch."""
    result = StaleResult(queue)
    for start in range(0, len(candidates), batch):
        ids = candidates[start : start + batch]
        began = time.perf_counter()
        moved, entries = recover_batch(
            client, queue, ids, count_as_stall=count_as_stall, break_immortal=break_immortal
        )
        elapsed_ms = (time.perf_counter() - began) * 1000
        result.moved += moved
        result.batches += 1
        result.max_batch_ms = max(result.max_batch_ms, elapsed_ms)
        for entry in entries:
            kind, _, job_id = entry.partition(":")
            result.skipped.setdefault(kind, []).append(job_id)
        if on_batch:
            on_batch(result, moved, elapsed_ms)
    return result
