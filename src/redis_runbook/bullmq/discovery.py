"""Find BullMQ queues with SCAN (never KEYS), for every configured prefix.

Candidates come from `<prefix>:*:meta` (hash) and `<prefix>:*:id` (string) keys; a
candidate is a queue when its meta has `version` (written by a Node Queue) or
`opts.maxLenEvents` (written by every add) — the rule of the maintainers' own
Taskforce connector (bullmq.md §1)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from redis_runbook.bullmq.keys import QueueRef, escape_glob, layout_of, queue_name_from_key

SCAN_COUNT = 1000


@dataclass
class Discovery:
    """The queues found, and candidates that did not qualify (a note for operators)."""

    queues: list[QueueRef] = field(default_factory=list)
    without_meta: list[QueueRef] = field(default_factory=list)


def _scan(client: redis.Redis, match: str, type_: str) -> Iterable[str]:
    cursor = 0
    while True:
        reply: Any = client.scan(cursor=cursor, match=match, count=SCAN_COUNT, _type=type_)
        cursor, keys = reply
        for key in keys:
            yield key.decode("utf-8", "surrogateescape") if isinstance(key, bytes) else str(key)
        if int(cursor) == 0:
            return


def discover(
    client: redis.Redis, prefixes: Sequence[str], layout_override: str = "auto"
) -> Discovery:
    """Every queue under `prefixes`, sorted, with its layout (v5/v6) from meta.version."""
    candidates: set[tuple[str, str]] = set()
    for prefix in prefixes:
        pattern = escape_glob(prefix)
        for suffix, type_ in (("meta", "hash"), ("id", "string")):
            for key in _scan(client, f"{pattern}:*:{suffix}", type_):
                name = queue_name_from_key(key, prefix, suffix)
                if name is not None:
                    candidates.add((prefix, name))
    ordered = sorted(candidates)
    pipe = client.pipeline(transaction=False)
    for prefix, name in ordered:
        pipe.hmget(f"{prefix}:{name}:meta", ["version", "opts.maxLenEvents"])
    found = Discovery()
    for (prefix, name), (version, max_len) in zip(ordered, pipe.execute(), strict=True):
        text = version.decode() if isinstance(version, bytes) else version
        ref = QueueRef(prefix, name, layout_of(text, layout_override))
        if version is None and max_len is None:
            found.without_meta.append(ref)
        else:
            found.queues.append(ref)
    return found


def select(found: Discovery, names: Sequence[str]) -> list[QueueRef]:
    """The queues named (by name or prefix:name); raises KeyError with the unknown ones."""
    if not names:
        return list(found.queues)
    by_name = {q.name: q for q in found.queues} | {q.display: q for q in found.queues}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise KeyError(", ".join(unknown))
    return [by_name[n] for n in names]
