"""Job schedulers (repeatable jobs) of BullMQ v5 queues, read-only and pipelined.

BullMQ v5 (5.81) keeps a queue's schedulers in one sorted set, `<prefix>:<q>:repeat`,
member = the scheduler's key, score = its next run in epoch milliseconds. Three kinds of
member share that set (`addJobScheduler-11.lua`, `addRepeatableJob-2.lua`,
`job-scheduler.ts` `transformSchedulerData`/`keyToData`):

- a **job scheduler** (`upsertJobScheduler(id, …)`, v5.16+): member = the id; the hash
  `<prefix>:<q>:repeat:<id>` holds `name`, `pattern` or `every`, `tz`, `limit`,
  `startDate`, `endDate`, `offset`, `data`, `opts` and `ic` (the iteration count, written
  only by `storeJobScheduler`: what tells a scheduler from a repeatable job);
- a **repeatable job** (`queue.add(name, data, {repeat})`): member = an md5 of
  `name:jobId:endDate:tz:pattern-or-every` (or `repeat.key`); the same hash without `ic`;
- a **legacy repeatable job** (BullMQ <= 3.0): member = `name:jobId:endDate:tz:pattern`
  itself, no hash.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import redis

from redis_runbook.bullmq.keys import QueueRef

#: Schedulers listed per queue (the earliest next runs); `count` is always the whole set.
LIST_LIMIT = 100

Kind = Literal["scheduler", "repeatable", "legacy"]


@dataclass(frozen=True)
class Scheduler:
    """One member of a queue's `repeat` set, as BullMQ reads it back."""

    id: str
    kind: Kind
    name: str | None = None
    pattern: str | None = None
    every: int | None = None
    tz: str | None = None
    next_ms: int | None = None
    end_date_ms: int | None = None
    iterations: int | None = None

    @property
    def schedule(self) -> str:
        """`every 60000 ms`, `0 * * * *` (with ` tz Europe/Bucharest`), or `-`."""
        if self.every is not None:
            text = f"every {self.every} ms"
        elif self.pattern:
            text = self.pattern
        else:
            return "-"
        return f"{text} tz {self.tz}" if self.tz else text

    def to_json(self) -> dict[str, Any]:
        """Stable JSON (docs/json.md)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "pattern": self.pattern,
            "every": self.every,
            "tz": self.tz,
            "next_ms": self.next_ms,
            "end_date_ms": self.end_date_ms,
            "iterations": self.iterations,
        }


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _number(value: Any) -> int | None:
    try:
        return int(float(_text(value))) if value not in (None, b"", "") else None
    except ValueError:
        return None


def parse_scheduler(member: Any, score: Any, fields: dict[Any, Any] | None) -> Scheduler:
    """One `repeat` member (`score` its next run) and its hash (empty or None when it
    has none), read the way BullMQ v5's `transformSchedulerData` reads them."""
    key = _text(member)
    next_ms = _number(score)
    if fields:
        got = {_text(k): v for k, v in fields.items()}
        return Scheduler(
            id=key,
            kind="scheduler" if "ic" in got else "repeatable",
            name=_text(got["name"]) if got.get("name") is not None else None,
            pattern=_text(got["pattern"]) if got.get("pattern") else None,
            every=_number(got.get("every")),
            tz=_text(got["tz"]) if got.get("tz") else None,
            next_ms=next_ms,
            end_date_ms=_number(got.get("endDate")),
            iterations=_number(got.get("ic")),
        )
    if ":" not in key:  # BullMQ shows nothing for it: a member whose hash is gone
        return Scheduler(id=key, kind="scheduler", next_ms=next_ms)
    parts = key.split(":")  # keyToData: name:jobId:endDate:tz:pattern (pattern may hold ':')
    return Scheduler(
        id=key,
        kind="legacy",
        name=parts[0] if parts[0] else None,
        pattern=":".join(parts[4:]) or None,
        tz=parts[3] if len(parts) > 3 and parts[3] else None,
        next_ms=next_ms,
        end_date_ms=_number(parts[2]) if len(parts) > 2 else None,
    )


def list_schedulers(
    client: redis.Redis, queues: Sequence[QueueRef], limit: int = LIST_LIMIT
) -> dict[QueueRef, list[Scheduler]]:
    """Up to `limit` schedulers per queue, earliest next run first: one pipelined
    `ZRANGE … WITHSCORES` round for all queues, one pipelined `HGETALL` round for the
    members found. Read-only (safe on a replica)."""
    if not queues:
        return {}
    pipe = client.pipeline(transaction=False)
    for q in queues:
        pipe.zrange(q.key("repeat"), 0, limit - 1, withscores=True)
    ranges: list[Any] = pipe.execute()
    pipe = client.pipeline(transaction=False)
    for q, members in zip(queues, ranges, strict=True):
        for member, _score in members:
            pipe.hgetall(q.key("repeat") + ":" + _text(member))
    hashes = iter(pipe.execute())
    result: dict[QueueRef, list[Scheduler]] = {}
    for q, members in zip(queues, ranges, strict=True):
        result[q] = [parse_scheduler(m, s, next(hashes)) for m, s in members]
    return result


@dataclass(frozen=True)
class Expected:
    """A scheduler the configuration says a queue must have."""

    prefix: str
    queue: str
    id: str

    @property
    def ref(self) -> QueueRef:
        """The queue it belongs to."""
        return QueueRef(self.prefix, self.queue)

    @property
    def display(self) -> str:
        """`<queue>/<id>` (`<prefix>:<queue>/<id>` for a prefix other than `bull`)."""
        return f"{self.ref.display}/{self.id}"


def missing_schedulers(client: redis.Redis, expected: Sequence[Expected]) -> list[Expected]:
    """The expected schedulers that are not in their queue's `repeat` set: one
    pipelined `ZSCORE` each. The queue need not exist (after an emergency start it
    does not): its schedulers are then all missing."""
    if not expected:
        return []
    pipe = client.pipeline(transaction=False)
    for e in expected:
        pipe.zscore(e.ref.key("repeat"), e.id)
    return [e for e, score in zip(expected, pipe.execute(), strict=True) if score is None]


#: What brings a missing scheduler back (the tool cannot: only the application knows
#: its template, data and options).
MISSING_HINT = (
    "the application registers them (upsertJobScheduler) when it starts: restart it, "
    "then redis-runbook queues status"
)


def missing_sentence(missing: Sequence[Expected], total: int) -> str:
    """None missing, or which (`<queue>/<id>`), in one sentence."""
    if not missing:
        return f"all {total} expected job scheduler(s) are registered"
    names = ", ".join(e.display for e in missing)
    return f"{len(missing)} of {total} expected job scheduler(s) missing: {names}"


def expected_of(prefixed: Sequence[tuple[str, str, str]]) -> list[Expected]:
    """`BullMQConfig.expected()`'s (prefix, queue, id) triples as `Expected`s."""
    return [Expected(prefix, queue, id_) for prefix, queue, id_ in prefixed]
