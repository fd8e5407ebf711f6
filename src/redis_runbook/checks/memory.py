"""Memory checks: usage vs maxmemory, eviction policy, evictions, OOM rejections,
fragmentation."""

from __future__ import annotations

from redis_runbook.checks.base import Context, band_status, band_text, banded, unknown
from redis_runbook.replies import error_counts, number
from redis_runbook.status import CheckResult, Status
from redis_runbook.units import format_bytes, format_duration


def memory(ctx: Context) -> CheckResult:
    """used_memory as a percentage of maxmemory (seed §6.1: 70 / 85 %)."""
    used = ctx.num("used_memory")
    limit = ctx.num("maxmemory")
    if used is None or limit is None:
        return unknown("memory", ctx, "INFO memory")
    band = ctx.config.thresholds.memory_pct
    if limit == 0:
        expected = ctx.config.server.maxmemory
        return CheckResult(
            name="memory",
            status=Status.WARNING,
            value=format_bytes(used),
            threshold="maxmemory set",
            summary=f"{format_bytes(used)} used and no maxmemory: Redis grows until the "
            f"kernel OOM-kills it (expected maxmemory {expected})",
            hint=f"{ctx.cli} CONFIG SET maxmemory {expected}; then set it in redis.conf",
            metric=used,
        )
    percent = used / limit * 100
    return banded(
        "memory",
        percent,
        band,
        shown=f"{percent:.1f} %",
        unit=" %",
        summary=f"{format_bytes(used)} of {format_bytes(limit)} maxmemory",
        hint=f"find what grew: {ctx.cli} --memkeys; rebuildable cache:* and ratelimit:* "
        "keys can be purged (seed §3.2)",
    )


def maxmemory_policy(ctx: Context) -> CheckResult:
    """Anything but noeviction is CRITICAL: BullMQ job locks carry TTLs and jobs
    can be evicted (BullMQ's going-to-production guide; bullmq#1046, #2215)."""
    policy = ctx.field("maxmemory_policy") or ctx.snapshot.config.get("maxmemory-policy")
    if policy is None:
        return unknown("maxmemory_policy", ctx, "maxmemory-policy")
    if policy == "noeviction":
        return CheckResult(
            "maxmemory_policy", Status.OK, policy, "noeviction", "writes fail instead of evicting"
        )
    return CheckResult(
        name="maxmemory_policy",
        status=Status.CRITICAL,
        value=policy,
        threshold="noeviction",
        summary=f"policy {policy} lets Redis evict keys: BullMQ locks and jobs can vanish",
        hint=f"{ctx.cli} CONFIG SET maxmemory-policy noeviction; then set it in redis.conf",
    )


def evicted_keys(ctx: Context) -> CheckResult:
    """Keys evicted since the server started (seed §6.1: > 0 warning, > 100 critical)."""
    evicted = ctx.num("evicted_keys")
    if evicted is None:
        return unknown("evicted_keys", ctx, "INFO stats")
    uptime = ctx.num("uptime_in_seconds")
    since = f" in {format_duration(uptime)} of uptime" if uptime is not None else ""
    return banded(
        "evicted_keys",
        evicted,
        ctx.config.thresholds.evicted_keys,
        shown=f"{evicted:.0f}",
        summary=f"{evicted:.0f} key(s) evicted{since}",
        hint="set maxmemory-policy noeviction and check memory headroom; evicted BullMQ "
        "jobs must be re-queued from PostgreSQL (seed §5.3)",
    )


#: Less room than this below maxmemory counts as "at the limit": the next write of a
#: job payload or two is refused (Redis compares before each write, so used memory
#: stops just short of, or just past, the limit).
AT_LIMIT_ROOM_BYTES = 64 * 1024
AT_LIMIT_ROOM_PCT = 1.0


def at_limit(info: dict[str, str]) -> bool | None:
    """True when used memory (less what eviction does not count: replication and
    AOF buffers) has reached maxmemory or is within 1 % / 64 KiB of it: writes are
    refused now under noeviction. None when INFO lacks the figures; False without
    a maxmemory."""
    used = number(info, "used_memory")
    limit = number(info, "maxmemory")
    if used is None or limit is None:
        return None
    if limit == 0:
        return False
    counted = used - (number(info, "mem_not_counted_for_evict") or 0)
    return limit - counted < max(AT_LIMIT_ROOM_BYTES, limit * AT_LIMIT_ROOM_PCT / 100)


def oom_rejections(ctx: Context) -> CheckResult:
    """Commands refused with `-OOM command not allowed` since the start (errorstats),
    judged by whether writes would be refused now: at maxmemory the count is banded;
    below it (maxmemory raised, keys freed) past refusals are reported, OK."""
    if not ctx.snapshot.info:
        return unknown("oom_rejections", ctx, "INFO errorstats")
    count = float(error_counts(ctx.snapshot.info).get("OOM", 0))
    full = at_limit(ctx.snapshot.info)
    if count and full is False:
        used = format_bytes(ctx.num("used_memory") or 0)
        limit = ctx.num("maxmemory") or 0
        of = f" of {format_bytes(limit)} maxmemory" if limit else " (no maxmemory)"
        return CheckResult(
            "oom_rejections",
            Status.OK,
            f"{count:.0f}",
            band_text(ctx.config.thresholds.oom_rejections) + " at maxmemory",
            f"{count:.0f} write(s) refused with OOM since start, none now: {used} used{of}",
            metric=count,
        )
    return banded(
        "oom_rejections",
        count,
        ctx.config.thresholds.oom_rejections,
        shown=f"{count:.0f}",
        summary=f"{count:.0f} write(s) refused with OOM since start",
        hint="writes fail at maxmemory: free rebuildable keys or raise maxmemory (seed §3.2)",
    )


def fragmentation(ctx: Context) -> CheckResult:
    """mem_fragmentation_ratio, only when the wasted bytes also matter: a ratio of 5
    on a 2 MB instance is noise. A ratio below 1 with real bytes hints at swap."""
    ratio = ctx.num("mem_fragmentation_ratio")
    used = ctx.num("used_memory")
    rss = ctx.num("used_memory_rss")
    if ratio is None or used is None or rss is None:
        return unknown("fragmentation", ctx, "INFO memory")
    t = ctx.config.thresholds
    wasted = ctx.num("mem_fragmentation_bytes", rss - used) or 0.0
    threshold = (
        f"{band_text(t.fragmentation_ratio)} and > {format_bytes(t.fragmentation_min_bytes)}"
    )
    status = Status.OK
    summary = f"ratio {ratio:.2f}, {format_bytes(max(wasted, 0))} above used memory"
    hint = None
    if wasted > t.fragmentation_min_bytes:
        status = band_status(ratio, t.fragmentation_ratio)
        if status is not Status.OK:
            hint = (
                f"{ctx.cli} MEMORY DOCTOR; CONFIG SET activedefrag yes, or restart in a "
                "maintenance window (seed §3.3)"
            )
    elif ratio < 1 and used - rss > t.fragmentation_min_bytes:
        status = Status.WARNING
        summary = f"ratio {ratio:.2f}: RSS is {format_bytes(used - rss)} below used memory"
        hint = "part of Redis is probably swapped out: check the host's swap and memory"
    return CheckResult(
        "fragmentation", status, f"{ratio:.2f}", threshold, summary, hint, metric=ratio
    )
