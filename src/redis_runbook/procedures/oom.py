"""`recover oom` (seed §3.2, scenario B, done right).

The seed clears the cache with `redis-cli --scan --pattern 'cache:*' | xargs
redis-cli DEL` and then suggests a bigger container. Here: measure memory per
category first (one SCAN walk, sampled MEMORY USAGE), purge only what the
config marks rebuildable (cache and ratelimit by default) with SCAN + pipelined
UNLINK, then prove writes work again with a probe write and give the permanent
fix with the exact lines to change: `maxmemory` in redis.conf (or CONFIG SET),
and the compose `deploy.resources.limits.memory`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis

from redis_runbook.config import Category
from redis_runbook.defaults import DEFAULT_BATCH, DEFAULT_SAMPLE
from redis_runbook.errors import Refused
from redis_runbook.keyspace import KeyspaceStats
from redis_runbook.keyspace_purge import select_categories
from redis_runbook.memory import MemoryFigures, read_memory
from redis_runbook.procedures.context import ProcedureContext
from redis_runbook.procedures.engine import Confirm, Plan, StepFailed
from redis_runbook.procedures.purge import (
    LabelledProgress,
    category_notes,
    confirmation,
    holders,
    measure_categories,
    purge_step,
    require_answer,
)
from redis_runbook.target import redis_cli_prefix, redis_errors
from redis_runbook.units import format_bytes

MIB = 1024**2
GIB = 1024**3
HEADROOM = 1.25  # maxmemory above the peak; the container limit above maxmemory
PROBE_KEY = "redis-runbook:oom-probe"


def round_size(size: float) -> int:
    """Up to a whole GiB from 1 GiB, else up to a multiple of 8 MiB."""
    unit = GIB if size >= GIB else 8 * MIB
    return max(unit, math.ceil(size / unit) * unit)


def redis_size(size: int) -> str:
    """A size as redis.conf writes it: `10gb`, `80mb`."""
    return f"{size // GIB}gb" if size % GIB == 0 else f"{math.ceil(size / MIB)}mb"


def compose_size(size: int) -> str:
    """A size as docker compose writes it: `13G`, `100M`."""
    return f"{size // GIB}G" if size % GIB == 0 else f"{math.ceil(size / MIB)}M"


def permanent_fix(figures: MemoryFigures, warning_pct: float = 70.0, cli: str = "redis-cli") -> str:
    """The config lines that stop this OOM from coming back. Under memory pressure
    (at maxmemory, OOM rejections, or above the warning threshold): maxmemory 25 %
    above the larger of the limit and the peak. Always: a container limit 25 %
    above maxmemory (fork copy-on-write during BGSAVE / AOF rewrite, client and
    AOF buffers, fragmentation), or the kernel kills Redis before maxmemory bites."""
    pressured = (
        figures.full or figures.oom_rejections > 0 or (figures.percent or 0.0) >= warning_pct
    )
    if figures.maxmemory and not pressured:
        maxmemory = figures.maxmemory
        head = (
            f"Permanent fix: memory is at {figures.percent:.1f} % of maxmemory "
            f"{redis_size(maxmemory)}, so maxmemory need not change; "
        )
    else:
        maxmemory = round_size(max(figures.maxmemory, figures.peak, figures.used) * HEADROOM)
        size = redis_size(maxmemory)
        current = redis_size(figures.maxmemory) if figures.maxmemory else "0 (no limit)"
        head = (
            f"Permanent fix: raise maxmemory from {current} to {size} — redis.conf: "
            f"`maxmemory {size}`; live: `{cli} CONFIG SET maxmemory {size}` then "
            f"`{cli} CONFIG REWRITE` (or edit redis.conf) so it survives a restart; "
        )
    limit = compose_size(round_size(maxmemory * HEADROOM))
    return head + (
        f"docker-compose.yml: `services.redis.deploy.resources.limits.memory: {limit}` "
        "(room above maxmemory for fork copy-on-write and buffers, or the kernel OOM-kills "
        "Redis first), then `docker compose up -d redis`; and give cache keys a TTL so "
        "they cannot fill memory again"
    )


def raise_now(figures: MemoryFigures, cli: str = "redis-cli") -> str:
    """The live command that lets writes in again: maxmemory 25 % above what is
    used. `cli` is redis-cli with the options that reach the target."""
    size = redis_size(round_size(max(figures.maxmemory, figures.used) * HEADROOM))
    return f"{cli} CONFIG SET maxmemory {size}"


def purge_shortfall(
    now: MemoryFigures, stats: KeyspaceStats, chosen: Sequence[Category]
) -> str | None:
    """Why purging `chosen` cannot get used_memory under maxmemory (what they hold
    against what must be freed, and where the memory is), or None when it can (or
    Redis is not over its limit)."""
    if not now.maxmemory or now.used < now.maxmemory:
        return None
    must_free = now.used - now.maxmemory + 1
    held = sum(stats.get(c.name).estimated_bytes for c in chosen)
    # Estimated counts: refused only when even the top of the error bar is short.
    most = held + sum(stats.get(c.name).memory_error for c in chosen)
    keys = sum(stats.get(c.name).keys for c in chosen)
    unmeasured = any(stats.get(c.name).keys and not stats.get(c.name).sampled for c in chosen)
    if most >= must_free or unmeasured:  # --sample 0: what they hold is not known
        return None
    names = ", ".join(c.name for c in chosen)
    return (
        f"{names} hold ≈ {format_bytes(held)} ({keys:,} keys) but "
        f"used_memory {format_bytes(now.used)} is over maxmemory "
        f"{format_bytes(now.maxmemory)}: Redis must free at least {format_bytes(must_free)} "
        f"to accept writes again. The memory is in: "
        f"{holders(stats, leave_out=[c.name for c in chosen])}"
    )


@dataclass
class OomWitness:
    """Memory and keyspace before the purge, compared with after (a Witness)."""

    ctx: ProcedureContext
    sample: int = DEFAULT_SAMPLE
    progress: LabelledProgress | None = None
    stats: KeyspaceStats | None = None
    before: MemoryFigures | None = None
    recording = "measure memory: used_memory vs maxmemory, keys and memory per category"
    comparing = "report memory before/after, check writes, give the permanent fix"

    def record(self) -> str:
        """used_memory vs maxmemory, and keys / estimated memory per category."""
        client = self.ctx.client(decode=False)
        try:
            with redis_errors(self.ctx.where):
                self.before = read_memory(client)
        finally:
            client.close()
        self.stats = measure_categories(
            self.ctx, self.sample, self.progress, label="memory by category"
        )
        parts = []
        for s in self.stats.categories.values():
            if s.keys:
                ttl = f", {s.estimated_with_ttl} with a TTL" if s.sampled else ""
                about = "" if s.exact else "≈ "
                counted = f"≈ {s.keys} ± {s.keys_error}" if s.keys_error else str(s.keys)
                parts.append(
                    f"{s.name} {counted} keys {about}{format_bytes(s.estimated_bytes)}{ttl}"
                )
        rejected = f", {self.before.oom_rejections} writes rejected with OOM so far"
        return f"{self.before.describe()}{rejected if self.before.oom_rejections else ''}; " + (
            "; ".join(parts) or "no keys"
        )

    def expecting(self, name: str) -> Callable[[], int | None]:
        """Keys of category `name` as step 1 measures them (a progress total)."""
        return lambda: self.stats.get(name).keys if self.stats else None

    def compare(self) -> str:
        """Memory after vs before, a probe write, and the permanent fix."""
        client = self.ctx.client()
        try:
            with redis_errors(self.ctx.where):
                after = read_memory(client)
                accepted, why = _probe_write(client)
        finally:
            client.close()
        before = self.before or after
        freed = before.used - after.used
        summary = (
            f"memory before: {before.describe()}; after: {after.describe()}; "
            f"freed {format_bytes(max(freed, 0))}"
        )
        cli = redis_cli_prefix(self.ctx.config.target)
        fix = permanent_fix(before, self.ctx.config.thresholds.memory_pct.warning, cli)
        if not accepted:
            raise StepFailed(
                f"writes are still refused ({why}); {summary}",
                f"raise the limit now: {raise_now(before, cli)}. " + fix,
            )
        return f"{summary}; writes are accepted again. {fix}"


def _probe_write(client: redis.Redis) -> tuple[bool, str]:
    """SET then UNLINK a key of our own: does Redis accept writes now?"""
    try:
        client.set(PROBE_KEY, "1", px=10_000)
    except redis.exceptions.OutOfMemoryError as exc:  # redis-py strips the "OOM " prefix
        return False, f"OOM {exc}".strip()
    except redis.ResponseError as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return True, f"probe not possible: {text}"
    client.unlink(PROBE_KEY)
    return True, "probe write accepted"


def plan_oom(
    ctx: ProcedureContext,
    categories_to_purge: Sequence[str] | None = None,
    allow_critical: Sequence[str] = (),
    *,
    sample: int = DEFAULT_SAMPLE,
    batch: int = DEFAULT_BATCH,
    max_ops_per_s: float | None = None,
    progress: LabelledProgress | None = None,
    purge_anyway: bool = False,
) -> Plan:
    """Build the OOM plan: measure, purge each chosen category, report. By default
    every rebuildable category is purged; a non-rebuildable one only when named in
    `allow_critical` (the confirmation then asks to type its name). Keys and memory
    per category are measured now, so each step says what it will delete; when the
    chosen categories hold less than must be freed to get under maxmemory, the
    plan is Refused (purging cannot help; the hint says what would) unless
    `purge_anyway`. Raises UnknownName / Refused / TargetUnavailable before
    anything is done."""
    chosen = select_categories(ctx.config.categories, categories_to_purge, allow_critical)
    require_answer(ctx)
    client = ctx.client()
    try:
        with redis_errors(ctx.where):
            now = read_memory(client)
    finally:
        client.close()
    stats = measure_categories(ctx, sample, progress, "plan: memory by category")
    shortfall = purge_shortfall(now, stats, chosen)
    cli = redis_cli_prefix(ctx.config.target)
    if shortfall and not purge_anyway:
        raise Refused(
            f"purging cannot help: {shortfall}",
            f"raise maxmemory now: {raise_now(now, cli)} (then CONFIG REWRITE so it survives a "
            "restart), or free what holds the memory (redis-runbook keys stats); to purge "
            "anyway: redis-runbook recover oom --purge-anyway",
        )
    witness = OomWitness(ctx, sample, progress)
    mode, word = confirmation(chosen)
    notes = [f"now: {now.describe()}" + (" (FULL: writes get OOM)" if now.full else "")]
    if shortfall:
        notes.append(f"PURGING CANNOT HELP: {shortfall}; what would: {raise_now(now, cli)}")
    notes += category_notes(chosen, stats)
    notes.append(
        "keys and memory counted when the plan was made; step 1 measures them again "
        "before anything is deleted"
    )
    steps = []
    for category in chosen:
        steps.append(
            purge_step(
                ctx,
                category,
                expected=witness.expecting(category.name),
                batch=batch,
                max_ops_per_s=max_ops_per_s,
                progress=progress,
                planned=stats.get(category.name),
            )
        )
    return Plan(
        procedure="recover oom",
        target=ctx.where,
        steps=steps,
        confirm=mode,
        confirm_word=word,
        data_loss=mode is Confirm.TYPED,
        witness=witness,
        notes=notes,
    )
