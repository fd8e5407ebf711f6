"""The keyspace by data category (seed §1.2): one SCAN walk, never KEYS.

Keys are read as bytes (key names need not be UTF-8) and matched against each
category's glob pattern in config order; the first match wins, the rest is `other`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from redis_runbook.config import Category

OTHER = "other"
OWN_PREFIX = b"redis-runbook:"  # the tool's own keys (its lock) are not user data
SCAN_COUNT = 1000


def category_of(key: bytes, categories: Sequence[Category]) -> str:
    """The name of the first category whose pattern matches `key`, else `other`."""
    name = key.decode("utf-8", errors="surrogateescape")
    for category in categories:
        if fnmatch.fnmatchcase(name, category.pattern):
            return category.name
    return OTHER


@dataclass
class KeyCounts:
    """Keys per category from one walk, and how many keys were scanned."""

    by_category: dict[str, int] = field(default_factory=dict)
    scanned: int = 0

    def diff(self, later: KeyCounts) -> dict[str, int]:
        """Per category: keys in `later` minus keys here (negative = lost)."""
        names = set(self.by_category) | set(later.by_category)
        return {n: later.by_category.get(n, 0) - self.by_category.get(n, 0) for n in sorted(names)}


def scan_keys(
    client: redis.Redis,
    *,
    match: str | None = None,
    count: int = SCAN_COUNT,
    on_batch: Callable[[int], None] | None = None,
) -> Iterator[list[bytes]]:
    """SCAN the current database in batches of key names (bytes). SCAN may return
    a key twice across a walk; callers that count must tolerate that (rehashing)."""
    cursor: int = 0
    while True:
        reply: Any = client.scan(cursor=cursor, match=match, count=count)
        cursor, keys = reply
        batch = [k if isinstance(k, bytes) else str(k).encode() for k in keys]
        if batch:
            if on_batch:
                on_batch(len(batch))
            yield batch
        if cursor == 0:
            return


def count_by_category(
    client: redis.Redis,
    categories: Sequence[Category],
    on_batch: Callable[[int], None] | None = None,
) -> KeyCounts:
    """Count the keys of every category in one SCAN walk."""
    counts = KeyCounts(by_category={c.name: 0 for c in categories} | {OTHER: 0})
    for batch in scan_keys(client, on_batch=on_batch):
        for key in batch:
            if key.startswith(OWN_PREFIX):
                continue
            counts.by_category[category_of(key, categories)] += 1
            counts.scanned += 1
    return counts
