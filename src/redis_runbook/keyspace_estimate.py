"""Keys and memory per category estimated from a random sample, in well under a
second whatever the size of the keyspace: the first look at a server that is out of
memory, before (or instead of) a SCAN walk of every key.

`RANDOMKEY` is sent `samples` times (pipelined); each key it returns is classified
like the walk classifies it (first matching category wins) and measured with
`MEMORY USAGE` and `PTTL`. With the database's size N from `DBSIZE`, a category
holding a fraction p of the sample holds about p·N keys, and its memory is N times
the sample mean of "the key's MEMORY USAGE if it is in the category, else 0". Each
figure carries its 95 % error bar (1.96 standard errors of that mean; for a category
no sampled key fell in, the rule of three: up to 3·N/n keys). RANDOMKEY
draws with replacement and close to uniformly (Redis picks a random hash bucket,
then a random key of it), so the bars are those of a simple random sample; a
category with no key in the sample is reported as 0 ± its bar, not as absent."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from redis_runbook.config import Category
from redis_runbook.defaults import DEFAULT_RANDOM_KEYS
from redis_runbook.keyspace import (
    OTHER,
    CategoryStats,
    Classifier,
    KeyspaceStats,
    dbsize,
    usage_and_ttl,
)

BATCH = 500  # commands per pipeline round trip
Z95 = 1.96


@dataclass(frozen=True)
class Estimate:
    """A figure and its 95 % error bar (value ± error)."""

    value: int
    error: int

    def describe(self, unit: str = "") -> str:
        """`500,300 ± 12,100` (with `unit` after each number)."""
        return f"{self.value:,}{unit} ± {self.error:,}{unit}"


def _scaled(values: Sequence[float], n: int, total: int) -> Estimate:
    """N times the mean of `values` padded with zeros to n samples, ± 1.96 SE."""
    if n == 0:
        return Estimate(0, 0)
    mean = sum(values) / n
    variance = sum((v - mean) ** 2 for v in values) + (n - len(values)) * mean**2
    stderr = math.sqrt(variance / max(n - 1, 1) / n)
    return Estimate(round(mean * total), math.ceil(Z95 * stderr * total))


@dataclass(frozen=True)
class CategoryEstimate:
    """One category's estimated keys, memory and keys with a TTL."""

    name: str
    keys: Estimate
    memory: Estimate
    with_ttl: Estimate
    sampled: int
    sampled_bytes: int = 0
    sampled_with_ttl: int = 0

    def to_stats(self, category: Category | None) -> CategoryStats:
        """As the walk's CategoryStats (`category` None: keys in no category), with
        the error bars: the drawn keys of the category are its sample, so memory and
        TTLs scale exactly as the estimate's."""
        stats = CategoryStats(
            self.name,
            category.pattern if category else None,
            keys=self.keys.value,
            sampled=self.sampled,
            sampled_bytes=self.sampled_bytes,
            sampled_with_ttl=self.sampled_with_ttl,
            keys_error=self.keys.error,
            memory_error=self.memory.error,
        )
        if category is not None:
            stats.rebuildable = category.rebuildable
            stats.priority, stats.persistence = category.priority, category.persistence
        return stats

    def to_json(self) -> dict[str, Any]:
        """Stable JSON (docs/json.md, `keys stats --estimate`)."""
        return {
            "name": self.name,
            "keys": self.keys.value,
            "keys_error": self.keys.error,
            "memory_bytes": self.memory.value,
            "memory_error": self.memory.error,
            "with_ttl": self.with_ttl.value,
            "with_ttl_error": self.with_ttl.error,
            "sampled": self.sampled,
        }


@dataclass
class KeyspaceEstimate:
    """Every category's estimate, from `samples` random keys of a database of `total`."""

    total: int
    samples: int
    categories: dict[str, CategoryEstimate] = field(default_factory=dict)
    seconds: float = 0.0

    def get(self, name: str) -> CategoryEstimate:
        """The estimate of category `name` (zeroes when it was not sampled)."""
        zero = Estimate(0, 0)
        return self.categories.get(name) or CategoryEstimate(name, zero, zero, zero, 0)

    def to_stats(self, categories: Sequence[Category]) -> KeyspaceStats:
        """As the walk's KeyspaceStats, every figure with its error bar."""
        stats = {c.name: self.get(c.name).to_stats(c) for c in categories}
        stats[OTHER] = self.get(OTHER).to_stats(None)
        return KeyspaceStats(stats, seconds=self.seconds, sample=self.samples)


def _random_keys(client: redis.Redis, samples: int) -> list[bytes]:
    keys: list[bytes] = []
    for start in range(0, samples, BATCH):
        pipe = client.pipeline(transaction=False)
        for _ in range(min(BATCH, samples - start)):
            pipe.execute_command("RANDOMKEY")
        keys += [k for k in pipe.execute() if isinstance(k, bytes)]
    return keys


def _measure(client: redis.Redis, keys: list[bytes]) -> list[tuple[bytes, int, bool]]:
    """(key, MEMORY USAGE, has a TTL) of the keys that still exist."""
    measured = []
    for start in range(0, len(keys), BATCH):
        chunk = keys[start : start + BATCH]
        for key, found in zip(chunk, usage_and_ttl(client, chunk), strict=True):
            if found is not None:
                measured.append((key, *found))
    return measured


def estimate(
    client: redis.Redis,
    categories: Sequence[Category],
    samples: int = DEFAULT_RANDOM_KEYS,
    total: int | None = None,
) -> KeyspaceEstimate:
    """Estimate keys, memory and keys with a TTL per category (see the module
    docstring). `client` must return bytes (make_client(decode=False)); read-only.
    `total`: the DBSIZE the caller has just read, else read here."""
    started = time.monotonic()
    total = dbsize(client) if total is None else total
    result = KeyspaceEstimate(total, 0)
    if total == 0 or samples <= 0:
        return result
    measured = _measure(client, _random_keys(client, samples))
    n = result.samples = len(measured)
    classify = Classifier(categories)
    owners = [classify(key) for key, _, _ in measured]
    mean_usage = sum(usage for _, usage, _ in measured) / n if n else 0.0
    for name in [*(c.name for c in categories), OTHER]:
        mine = [(usage, ttl) for owner, (_, usage, ttl) in zip(owners, measured, strict=True)
                if owner == name]  # fmt: skip
        if not mine:  # none sampled: not "none there", up to 3·N/n (95 %)
            bound = math.ceil(3 * total / n) if n else total
            unseen = Estimate(0, bound)
            memory = Estimate(0, math.ceil(bound * mean_usage))
            result.categories[name] = CategoryEstimate(name, unseen, memory, unseen, 0)
            continue
        result.categories[name] = CategoryEstimate(
            name,
            keys=_scaled([1.0] * len(mine), n, total),
            memory=_scaled([float(usage) for usage, _ in mine], n, total),
            with_ttl=_scaled([1.0 for _, ttl in mine if ttl], n, total),
            sampled=len(mine),
            sampled_bytes=sum(usage for usage, _ in mine),
            sampled_with_ttl=sum(1 for _, ttl in mine if ttl),
        )
    result.seconds = time.monotonic() - started
    return result
