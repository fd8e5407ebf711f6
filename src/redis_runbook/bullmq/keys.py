"""The BullMQ key layout (Node v5; the key set is the same in v6, see bullmq.md §1).

A queue is `<prefix>:<name>:<suffix>` plus one hash per job `<prefix>:<name>:<id>`
with sub-keys such as `:lock`. Prefixes may contain `:` or hash tags (`{bull}`).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Literal

Layout = Literal["v5", "v6"]
#: Suffixes of `src/classes/queue-keys.ts` (v5.81.3 and v6 alike).
SUFFIXES = (
    "active", "wait", "waiting-children", "paused", "id", "delayed", "prioritized",
    "stalled-check", "completed", "failed", "stalled", "repeat", "limiter", "meta", "events",
    "pc", "marker", "de",
)  # fmt: skip
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")
_DIGITS = re.compile(r"^\d+$")

# Blocking commands BullMQ workers use to wait for jobs (v5: BZPOPMIN on the
# marker key; older: BRPOPLPUSH / BLMOVE); blocked there is a worker idling.
WORKER_WAITS = frozenset({"bzpopmin", "brpoplpush", "blmove", "bzmpop", "xread", "xreadgroup"})


def escape_glob(text: str) -> str:
    """Escape Redis glob characters so `text` matches only itself in SCAN MATCH."""
    return _GLOB_SPECIAL.sub(r"\\\1", text)


@dataclass(frozen=True, order=True)
class QueueRef:
    """One queue: its prefix, its name, and the layout its data follows."""

    prefix: str
    name: str
    layout: Layout = "v5"

    @property
    def base(self) -> str:
        """`<prefix>:<name>:` — every key of the queue starts with it."""
        return f"{self.prefix}:{self.name}:"

    def key(self, suffix: str) -> str:
        """`<prefix>:<name>:<suffix>`."""
        return self.base + suffix

    def job(self, job_id: str) -> str:
        """The job hash."""
        return self.base + job_id

    def lock(self, job_id: str) -> str:
        """The job's lock (a string with a PX TTL while a worker holds it)."""
        return self.base + job_id + ":lock"

    @property
    def display(self) -> str:
        """`name` for the default prefix, else `prefix:name`."""
        return self.name if self.prefix == "bull" else f"{self.prefix}:{self.name}"

    def worker_client_names(self) -> tuple[str, str]:
        """Client names a worker of this queue sets: Node uses base64 of the name
        (`bull:ZXhw`), the Python port the plain name; both may add `:w:<name>`."""
        encoded = base64.b64encode(self.name.encode()).decode()
        return f"{self.prefix}:{encoded}", f"{self.prefix}:{self.name}"


def queue_name_from_key(key: str, prefix: str, suffix: str) -> str | None:
    """The queue name of `<prefix>:<name>:<suffix>`, or None when `key` is not one.
    The name is everything between the prefix and the last `:` — legacy names such
    as the seed's `enrich:batch` contain `:` themselves."""
    head, tail = f"{prefix}:", f":{suffix}"
    if not (key.startswith(head) and key.endswith(tail)):
        return None
    name = key[len(head) : len(key) - len(tail)]
    return name or None


def invalid_queue_name(name: str) -> str | None:
    """Why BullMQ v5 would refuse `name` for a new queue, or None."""
    if not name:
        return "a queue name cannot be empty"
    if ":" in name:
        return f"BullMQ v5 rejects ':' in queue names; use {name.replace(':', '-')!r}"
    return None


def invalid_job_id(job_id: str) -> str | None:
    """Why BullMQ v5 would refuse `job_id` as a custom id, or None."""
    if not job_id:
        return "a job id cannot be empty"
    if ":" in job_id:
        return f"job id {job_id!r} contains ':'"
    if _DIGITS.match(job_id):
        return f"job id {job_id!r} is all digits (BullMQ reserves those for its own ids)"
    if len(job_id) > 250:
        return f"job id of {len(job_id)} characters is too long"
    return None


def layout_of(version: str | None, override: str = "auto") -> Layout:
    """v5 or v6 from `meta.version` (`bullmq:5.81.3`); a queue without a version (the
    Python port writes none) is taken as v5, the fleet this tool serves."""
    if override in ("v5", "v6"):
        return "v6" if override == "v6" else "v5"
    match = re.match(r"bullmq:(\d+)\.", version or "")
    return "v6" if match and int(match.group(1)) >= 6 else "v5"
