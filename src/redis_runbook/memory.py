"""Memory figures of a live server (INFO memory + errorstats), the numbers the
OOM procedure and `keys stats` report before and after they act."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import redis

from redis_runbook.replies import error_counts, info_fields, number
from redis_runbook.units import format_bytes


@dataclass(frozen=True)
class MemoryFigures:
    """used_memory vs maxmemory and what surrounds it."""

    used: int
    peak: int
    maxmemory: int
    policy: str
    rss: int
    fragmentation_ratio: float | None
    fragmentation_bytes: int | None
    oom_rejections: int

    @property
    def percent(self) -> float | None:
        """used_memory as a percentage of maxmemory (None without a maxmemory)."""
        return self.used / self.maxmemory * 100 if self.maxmemory else None

    @property
    def full(self) -> bool:
        """True when used_memory has reached maxmemory (writes may get OOM)."""
        return bool(self.maxmemory) and self.used >= self.maxmemory

    def describe(self) -> str:
        """`used 63.9 MiB of 64.0 MiB maxmemory (99.8 %), policy noeviction`."""
        if not self.maxmemory:
            return f"used {format_bytes(self.used)}, maxmemory 0 (no limit), policy {self.policy}"
        return (
            f"used {format_bytes(self.used)} of {format_bytes(self.maxmemory)} maxmemory "
            f"({self.percent:.1f} %), policy {self.policy}"
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self) | {"percent": self.percent}


def read_memory(client: redis.Redis) -> MemoryFigures:
    """INFO memory and INFO errorstats in one pipelined round trip."""
    pipe = client.pipeline(transaction=False)
    pipe.execute_command("INFO", "memory")
    pipe.execute_command("INFO", "errorstats")
    memory_reply, errors_reply = pipe.execute(raise_on_error=False)
    if isinstance(memory_reply, Exception):
        raise memory_reply
    info = info_fields(memory_reply)
    errors = {} if isinstance(errors_reply, Exception) else error_counts(info_fields(errors_reply))
    frag_bytes = number(info, "mem_fragmentation_bytes")
    return MemoryFigures(
        used=int(number(info, "used_memory", 0) or 0),
        peak=int(number(info, "used_memory_peak", 0) or 0),
        maxmemory=int(number(info, "maxmemory", 0) or 0),
        policy=info.get("maxmemory_policy", "?"),
        rss=int(number(info, "used_memory_rss", 0) or 0),
        fragmentation_ratio=number(info, "mem_fragmentation_ratio"),
        fragmentation_bytes=None if frag_bytes is None else int(frag_bytes),
        oom_rejections=errors.get("OOM", 0),
    )
