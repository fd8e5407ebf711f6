"""Safe purge of one data category (seed §3.2 "clear the non-essential cache",
done right): `SCAN MATCH pattern COUNT 1000` and pipelined `UNLINK` in batches,
never KEYS, never one DEL of a huge batch.

The next SCAN is sent as soon as the previous one answers, and the UNLINKs of
its keys follow it on the same connection, so Redis never waits for this process
and this process never waits for a round trip it could overlap. Redis serves
other clients between our commands (one SCAN of 1000 slots, UNLINKs of at most
`batch` keys), so it stays responsive; `max_ops_per_s` slows the walk further.

A key is deleted only when all of these hold: the server's MATCH returned it,
it matches the category's pattern by Redis' glob rules here too, no earlier
category in config order claims it (the first match wins, as in `keys stats`),
and it is not protected: no non-rebuildable category's pattern matches it
(whatever the order: config validation refuses such overlaps, this holds even for
a list built in code), it is not under a `[bullmq] prefixes` entry (even when the
categories forget to declare BullMQ), and it does not start with the tool's own
prefix `redis-runbook:`. A non-rebuildable category named explicitly may take the
keys under a BullMQ prefix only when its whole pattern lies under that prefix (it
is BullMQ data itself).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from redis_runbook.config import Category
from redis_runbook.defaults import DEFAULT_BATCH
from redis_runbook.errors import Refused, UnknownName
from redis_runbook.globs import compile_any, prefix_glob, under_prefix
from redis_runbook.keyspace import OWN_PREFIX, SCAN_COUNT, Classifier, Progress

DEFAULT_BULLMQ_PREFIXES = ("bull",)


@dataclass(frozen=True)
class PurgeResult:
    """What one purge did."""

    category: str
    pattern: str
    deleted: int
    matched: int
    skipped: int
    seconds: float
    protected: int = 0

    def describe(self) -> str:
        """One sentence for the operator."""
        rate = self.deleted / self.seconds if self.seconds > 0 else 0.0
        text = (
            f"deleted {self.deleted} {self.category} keys ({self.pattern}) in "
            f"{self.seconds:.1f} s ({rate:,.0f} keys/s)"
        )
        if self.protected:
            text += (
                f"; kept {self.protected} matching keys that a non-rebuildable category, a "
                "BullMQ prefix or redis-runbook itself protects"
            )
        if self.skipped > self.protected:
            text += (
                f"; kept {self.skipped - self.protected} matching keys that belong to an "
                "earlier category"
            )
        return text


class Protection:
    """The keys a purge of `target` must never delete, compiled once: keys of any
    other non-rebuildable category, keys under a BullMQ prefix (unless `target` is
    a non-rebuildable category lying wholly under that prefix), the tool's own."""

    def __init__(
        self, target: Category, categories: Sequence[Category], bullmq_prefixes: Sequence[str]
    ) -> None:
        self.patterns = [
            c.pattern for c in categories if not c.rebuildable and c.name != target.name
        ]
        self.patterns += [
            prefix_glob(p)
            for p in bullmq_prefixes
            if target.rebuildable or not under_prefix(target.pattern, p)
        ]
        self._regex = compile_any(self.patterns)

    def __call__(self, key: bytes) -> bool:
        """True when `key` must be kept."""
        if key.startswith(OWN_PREFIX):
            return True
        return self._regex is not None and self._regex.fullmatch(key) is not None


def select_categories(
    categories: Sequence[Category],
    names: Sequence[str] | None,
    allow_critical: Sequence[str] = (),
) -> list[Category]:
    """The categories to purge, in config order. `names` None means every
    rebuildable category. Names in `allow_critical` are added, and purged even when
    not rebuildable (the caller named them explicitly). Raises UnknownName for a
    name that is not a category, Refused for a non-rebuildable one not allowed."""
    valid = [c.name for c in categories]
    base = [c.name for c in categories if c.rebuildable] if names is None else list(names)
    wanted = list(dict.fromkeys([*base, *allow_critical]))
    unknown = [n for n in wanted if n not in valid]
    if unknown:
        raise UnknownName(
            f"unknown category {', '.join(repr(n) for n in unknown)}; "
            f"the categories are: {', '.join(valid) or 'none configured'}",
            "redis-runbook keys stats   # keys and memory per category",
        )
    if not wanted:
        raise UnknownName(
            "nothing to purge: no category is marked rebuildable = true in the config",
            "name one: --category NAME (see redis-runbook keys stats)",
        )
    chosen = [c for c in categories if c.name in wanted]
    for category in chosen:
        if not category.rebuildable and category.name not in allow_critical:
            raise Refused(
                f"category {category.name!r} ({category.pattern}, priority "
                f"{category.priority}, persistence {category.persistence}) is not "
                "rebuildable: purging it loses data the application cannot recreate",
                f"if you really mean it, name it explicitly: --include-critical {category.name}",
            )
    return chosen


class _Wire:
    """One connection with several commands in flight: replies arrive in the order
    the commands were sent, so a FIFO says what each reply answers."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.in_flight: deque[str] = deque()
        self.deleted = 0

    def send(self, kind: str, *args: Any) -> None:
        """Send one command without waiting for its reply."""
        self.connection.send_command(*args)
        self.in_flight.append(kind)

    def unlink(self, keys: list[bytes], batch: int) -> None:
        """UNLINK `keys` in commands of at most `batch` keys."""
        for start in range(0, len(keys), batch):
            self.send("unlink", "UNLINK", *keys[start : start + batch])

    def read_until(self, kind: str | None) -> Any:
        """Read replies in order (counting UNLINKed keys) up to the next `kind`
        reply, which is returned; None drains every reply."""
        while self.in_flight:
            sent = self.in_flight.popleft()
            reply = self.connection.read_response()
            if sent == "unlink":
                self.deleted += int(reply)
            elif sent == kind:
                return reply
        return None


def _total(expected: int | None, deleted: int) -> int | None:
    """The progress total: `expected` (an estimate may fall short), else unknown."""
    return None if expected is None else max(expected, deleted)


def purge(
    client: redis.Redis,
    category: Category,
    *,
    categories: Sequence[Category] = (),
    batch: int = DEFAULT_BATCH,
    max_ops_per_s: float | None = None,
    on_progress: Progress | None = None,
    expected: int | None = None,
    allow_not_rebuildable: bool = False,
    bullmq_prefixes: Sequence[str] = DEFAULT_BULLMQ_PREFIXES,
) -> PurgeResult:
    """Delete every key of `category` with SCAN MATCH + pipelined UNLINK.

    `categories` is the full config list (for first-match-wins ownership; the
    category alone when empty). `client` must return bytes (decode=False).
    `expected` is only a progress total. Refuses a category that is not
    rebuildable unless `allow_not_rebuildable`. Keys that `Protection` names (other
    non-rebuildable categories, `bullmq_prefixes`, the tool's own) are kept.

    On one connection, the next SCAN is sent as soon as the previous one answers,
    before its keys are checked, and the UNLINKs follow it: Redis works on the
    next batch while this process checks the last one."""
    if not category.rebuildable and not allow_not_rebuildable:
        raise Refused(
            f"category {category.name!r} is not rebuildable: refusing to purge it",
            f"name it explicitly: --include-critical {category.name}",
        )
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    owners = list(categories) if any(c.name == category.name for c in categories) else [category]
    classify = Classifier(owners)
    protect = Protection(category, categories, bullmq_prefixes)
    started = time.monotonic()
    matched = skipped = protected = 0
    pool = client.connection_pool
    connection = pool.get_connection()
    wire = _Wire(connection)
    try:
        scan = ("SCAN", "MATCH", category.pattern, "COUNT", SCAN_COUNT)
        wire.send("scan", scan[0], 0, *scan[1:])
        while True:
            cursor, keys = wire.read_until("scan")
            cursor = int(cursor)
            if cursor != 0:
                wire.send("scan", scan[0], cursor, *scan[1:])
            doomed = []
            for key in keys:
                if classify(key) != category.name:
                    continue  # an earlier category's key (first match wins)
                if protect(key):
                    protected += 1
                else:
                    doomed.append(key)
            matched += len(keys)
            skipped += len(keys) - len(doomed)
            wire.unlink(doomed, batch)
            if on_progress:
                on_progress(wire.deleted, _total(expected, wire.deleted))
            if max_ops_per_s:
                ahead = wire.deleted / max_ops_per_s - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)  # pacing, not waiting for a state: bounded by the rate
            if cursor == 0:
                break
        wire.read_until(None)
    except BaseException:
        connection.disconnect()  # replies may be left unread: never reuse it
        raise
    finally:
        pool.release(connection)
    if on_progress:
        on_progress(wire.deleted, _total(expected, wire.deleted))
    return PurgeResult(
        category=category.name,
        pattern=category.pattern,
        deleted=wire.deleted,
        matched=matched,
        skipped=skipped,
        seconds=time.monotonic() - started,
        protected=protected,
    )
