"""The keyspace by data category (seed §1.2): one SCAN walk, never KEYS.

Keys are read as bytes (key names need not be UTF-8) and matched against each
category's glob pattern in config order, with Redis' own glob rules (`*`, `?`,
`[a-z]`, `[^x]`, `\\` escapes); the first match wins, the rest is `other`. Keys
the tool owns (`redis-runbook:` prefix) belong to no category and are never
counted, sampled or deleted.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis

from redis_runbook.config import Category, TargetConfig
from redis_runbook.defaults import DEFAULT_SAMPLE
from redis_runbook.globs import glob_regex
from redis_runbook.replies import keyspace, parse_info
from redis_runbook.target import make_client

OTHER = "other"
OWN_PREFIX = b"redis-runbook:"  # the tool's own keys (its lock) are not user data
SCAN_COUNT = 1000

Progress = Callable[[int, int | None], None]
"""Progress callback: (done, total or None when unknown)."""


@functools.lru_cache(maxsize=256)
def compile_glob(pattern: str) -> re.Pattern[bytes]:
    """A compiled bytes regex equivalent to the Redis glob `pattern` (fullmatch)."""
    return re.compile(glob_regex(pattern), re.DOTALL)


class Classifier:
    """Maps a key name to its category in one regex call: an alternation of the
    category patterns in config order, so the first matching category wins."""

    def __init__(self, categories: Sequence[Category]) -> None:
        self.names = [c.name for c in categories]
        if categories:
            alternatives = b"|".join(
                b"(?P<c%d>%s)" % (i, glob_regex(c.pattern)) for i, c in enumerate(categories)
            )
            self._regex: re.Pattern[bytes] | None = re.compile(alternatives, re.DOTALL)
        else:
            self._regex = None

    def __call__(self, key: bytes) -> str:
        """The category of `key` (OTHER when none matches). Own keys are not asked about."""
        match = self._regex.fullmatch(key) if self._regex is not None else None
        if match is None or match.lastgroup is None:
            return OTHER
        return self.names[int(match.lastgroup[1:])]


def category_of(key: bytes, categories: Sequence[Category]) -> str:
    """The name of the first category whose pattern matches `key`, else `other`."""
    return Classifier(categories)(key)


def find_category(categories: Sequence[Category], name: str) -> Category | None:
    """The category called `name`, or None."""
    return next((c for c in categories if c.name == name), None)


@dataclass
class KeyCounts:
    """Keys per category from one walk, and how many keys were scanned."""

    by_category: dict[str, int] = field(default_factory=dict)
    scanned: int = 0
    # Keys with a TTL per category (counted only when asked: one PTTL per key).
    volatile_by_category: dict[str, int] = field(default_factory=dict)

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
    a key twice across a walk; callers that count must tolerate that (rehashing).

    The next SCAN is sent before a batch is handed to the caller, so Redis walks
    on while the caller works; the walk holds one connection of the client's pool
    (commands the caller sends meanwhile use another)."""
    options: list[str | int] = ["COUNT", count]
    if match:
        options += ["MATCH", match]
    pool = client.connection_pool
    connection = pool.get_connection()
    finished = False
    try:
        connection.send_command("SCAN", 0, *options)
        while True:
            reply: Any = connection.read_response()
            cursor = int(reply[0])
            if cursor != 0:
                connection.send_command("SCAN", cursor, *options)
            batch = [k if isinstance(k, bytes) else str(k).encode() for k in reply[1]]
            if batch:
                if on_batch:
                    on_batch(len(batch))
                yield batch
            if cursor == 0:
                finished = True
                return
    finally:
        if not finished:
            connection.disconnect()  # a SCAN reply may be unread: never reuse it
        pool.release(connection)


def count_by_category(
    client: redis.Redis,
    categories: Sequence[Category],
    on_batch: Callable[[int], None] | None = None,
    *,
    volatile: bool = False,
) -> KeyCounts:
    """Count the keys of every category in one SCAN walk; with `volatile`, also the
    keys with a TTL per category (one pipelined PTTL per batch)."""
    counts = KeyCounts(by_category={c.name: 0 for c in categories} | {OTHER: 0})
    if volatile:
        counts.volatile_by_category = dict.fromkeys(counts.by_category, 0)
    classify = Classifier(categories)
    for batch in scan_keys(client, on_batch=on_batch):
        keys = [key for key in batch if not key.startswith(OWN_PREFIX)]
        names = [classify(key) for key in keys]
        for name in names:
            counts.by_category[name] += 1
        counts.scanned += len(keys)
        if volatile and keys:
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.pttl(key)
            for name, ttl in zip(names, pipe.execute(), strict=True):
                if int(ttl) >= 0:  # -1: no TTL; -2: gone since the SCAN
                    counts.volatile_by_category[name] += 1
    return counts


def dbsize(client: redis.Redis) -> int:
    """Keys in the current database (DBSIZE), for progress totals."""
    reply: Any = client.dbsize()
    return int(reply)


@dataclass
class CategoryStats:
    """One category's share of the keyspace. Memory and TTLs are measured on a
    sample (the first `sample` keys SCAN returns: SCAN walks the hash table, so
    that is a random sample of the category) and scaled to the key count."""

    name: str
    pattern: str | None
    keys: int = 0
    sampled: int = 0
    sampled_bytes: int = 0
    sampled_with_ttl: int = 0
    rebuildable: bool = False
    priority: str = "n/a"
    persistence: str = "n/a"
    # 95 % error bars when `keys` itself is estimated from random keys (not walked).
    keys_error: int = 0
    memory_error: int = 0

    @property
    def estimated_bytes(self) -> int:
        """MEMORY USAGE of the sample, scaled to every key of the category."""
        if not self.sampled:
            return 0
        return round(self.sampled_bytes / self.sampled * self.keys)

    @property
    def estimated_with_ttl(self) -> int:
        """Keys with a TTL in the sample, scaled to every key of the category."""
        if not self.sampled:
            return 0
        return round(self.sampled_with_ttl / self.sampled * self.keys)

    @property
    def exact(self) -> bool:
        """True when every key was sampled (the figures are not estimates)."""
        return self.sampled == self.keys

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (docs/json.md, `keys stats`)."""
        return {
            "name": self.name,
            "pattern": self.pattern,
            "priority": self.priority,
            "persistence": self.persistence,
            "rebuildable": self.rebuildable,
            "keys": self.keys,
            "sampled": self.sampled,
            "estimated_bytes": self.estimated_bytes,
            "estimated_keys_with_ttl": self.estimated_with_ttl,
            "exact": self.exact,
        }


@dataclass
class KeyspaceStats:
    """Per-category stats from one SCAN walk."""

    categories: dict[str, CategoryStats]
    scanned: int = 0
    seconds: float = 0.0
    sample: int = DEFAULT_SAMPLE

    def get(self, name: str) -> CategoryStats:
        """The stats of category `name` (zeroes when it has no keys)."""
        return self.categories.get(name) or CategoryStats(name, None)


def usage_and_ttl(client: redis.Redis, keys: Sequence[bytes]) -> list[tuple[int, bool] | None]:
    """MEMORY USAGE of each key and whether it has a TTL, in one pipelined round trip;
    None for a key gone (expired, deleted) since it was named."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.execute_command("MEMORY USAGE", key)
        pipe.execute_command("PTTL", key)
    replies = pipe.execute(raise_on_error=False)
    measured: list[tuple[int, bool] | None] = []
    for usage, ttl in zip(replies[::2], replies[1::2], strict=True):
        alive = isinstance(usage, int) and isinstance(ttl, int) and ttl != -2
        measured.append((usage, ttl >= 0) if alive else None)
    return measured


def _sample(client: redis.Redis, keys: list[bytes], into: list[CategoryStats]) -> None:
    for stats, measured in zip(into, usage_and_ttl(client, keys), strict=True):
        if measured is not None:
            stats.sampled += 1
            stats.sampled_bytes += measured[0]
            stats.sampled_with_ttl += measured[1]


def category_stats(
    client: redis.Redis,
    categories: Sequence[Category],
    sample: int = DEFAULT_SAMPLE,
    on_progress: Progress | None = None,
    total: int | None = None,
) -> KeyspaceStats:
    """Keys per category in one SCAN walk, with MEMORY USAGE and PTTL read
    (pipelined, one round trip per SCAN batch) for up to `sample` keys per
    category. `client` must return bytes (make_client(decode=False)). `total`:
    the DBSIZE the caller has just read (the progress total), else read here."""
    started = time.monotonic()
    stats = {
        c.name: CategoryStats(
            c.name,
            c.pattern,
            rebuildable=c.rebuildable,
            priority=c.priority,
            persistence=c.persistence,
        )
        for c in categories
    }
    stats[OTHER] = CategoryStats(OTHER, None)
    classify = Classifier(categories)
    total = dbsize(client) if total is None else total
    result = KeyspaceStats(stats, sample=sample)
    for batch in scan_keys(client):
        to_sample: list[bytes] = []
        owners: list[CategoryStats] = []
        for key in batch:
            if key.startswith(OWN_PREFIX):
                continue
            owner = stats[classify(key)]
            owner.keys += 1
            result.scanned += 1
            if owner.keys <= sample:
                to_sample.append(key)
                owners.append(owner)
        if to_sample:
            _sample(client, to_sample, owners)
        if on_progress:
            on_progress(result.scanned, max(total, result.scanned))
    result.seconds = time.monotonic() - started
    return result


def target_for_db(target: TargetConfig, db: int) -> TargetConfig:
    """The same target with database `db` selected (URL path, or `?db=` for unix)."""
    parts = urlsplit(target.url)
    if parts.scheme == "unix":
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "db"] + [("db", str(db))]
        url = urlunsplit(parts._replace(query=urlencode(query)))
    else:
        url = urlunsplit(parts._replace(path=f"/{db}"))
    return target.model_copy(update={"url": url})


def count_keys(target: TargetConfig, categories: Sequence[Category]) -> dict[str, Any]:
    """Keys per database and category, with and without a TTL (one SCAN walk per
    database), totals, and `changes`: the writes the server took since its last save
    or load, read after the walk. With BGSAVE just done that is how far the walk can
    be from the snapshot (0 on a quiet server: then the counts are the RDB's)."""
    client = make_client(target)
    try:
        info = parse_info(str(client.execute_command("INFO", "keyspace")))
        by_db, totals, volatile = _count_databases(target, categories, info)
        persistence = parse_info(str(client.execute_command("INFO", "persistence")))
    finally:
        client.close()
    return {
        "total": sum(d["keys"] for d in by_db.values()),
        "expires": sum(d["expires"] for d in by_db.values()),
        "by_category": totals,
        "volatile_by_category": volatile,
        "changes": int(persistence.get("rdb_changes_since_last_save", 0)),
        "by_db": by_db,
    }


def _count_databases(
    target: TargetConfig, categories: Sequence[Category], info: dict[str, str]
) -> tuple[dict[str, Any], dict[str, int], dict[str, int]]:
    by_db: dict[str, Any] = {}
    totals: dict[str, int] = {}
    volatile: dict[str, int] = {}
    for space in keyspace(info):
        db_client = make_client(target_for_db(target, space.db), decode=False)
        try:
            counts = count_by_category(db_client, categories, volatile=True)
        finally:
            db_client.close()
        by_db[str(space.db)] = {
            "keys": counts.scanned,
            "expires": space.expires,
            "by_category": counts.by_category,
            "volatile_by_category": counts.volatile_by_category,
        }
        for name, n in counts.by_category.items():
            totals[name] = totals.get(name, 0) + n
        for name, n in counts.volatile_by_category.items():
            volatile[name] = volatile.get(name, 0) + n
    return by_db, totals, volatile
