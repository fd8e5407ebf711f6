"""Client checks: connected, blocked, rejected connections."""

from __future__ import annotations

from collections import Counter

from redis_runbook.checks.base import (
    CheckResult,
    Context,
    Status,
    band_status,
    band_text,
    check,
    unknown,
)


@check("connected_clients")
def connected_clients(ctx: Context) -> CheckResult:
    """Client connections (seed §6.1: > 200 warning, > 500 critical)."""
    count = ctx.num("connected_clients")
    if count is None:
        return unknown("connected_clients", ctx, "INFO clients")
    band = ctx.config.thresholds.connected_clients
    status = band_status(count, band)
    maxclients = ctx.num("maxclients")
    of_max = f" of maxclients {maxclients:.0f}" if maxclients else ""
    return CheckResult(
        name="connected_clients",
        status=status,
        value=f"{count:.0f}",
        threshold=band_text(band),
        summary=f"{count:.0f} client(s) connected{of_max}",
        hint=None
        if status is Status.OK
        else "look for connection leaks by name and address: redis-cli CLIENT LIST",
        metric=count,
    )


def _blocked_commands(ctx: Context) -> str:
    if ctx.snapshot.clients is None:
        return ""
    counts = Counter(c.get("cmd", "?") for c in ctx.snapshot.clients if "b" in c.get("flags", ""))
    return ", ".join(f"{cmd} {n}" for cmd, n in counts.most_common(4))


@check("blocked_clients")
def blocked_clients(ctx: Context) -> CheckResult:
    """Clients blocked in BLPOP/BZPOPMIN/XREAD... BullMQ workers block on
    BZPOPMIN by design, so a moderate number is normal."""
    count = ctx.num("blocked_clients")
    if count is None:
        return unknown("blocked_clients", ctx, "INFO clients")
    band = ctx.config.thresholds.blocked_clients
    status = band_status(count, band)
    commands = _blocked_commands(ctx)
    return CheckResult(
        name="blocked_clients",
        status=status,
        value=f"{count:.0f}",
        threshold=band_text(band),
        summary=f"{count:.0f} client(s) blocked" + (f" ({commands})" if commands else ""),
        hint=None
        if status is Status.OK
        else "redis-cli CLIENT LIST | grep 'flags=b'; workers block on bzpopmin by design, "
        "anything else is suspect",
        metric=count,
    )


@check("rejected_connections")
def rejected_connections(ctx: Context) -> CheckResult:
    """Connections refused because maxclients was reached, since the start."""
    count = ctx.num("rejected_connections")
    if count is None:
        return unknown("rejected_connections", ctx, "INFO stats")
    band = ctx.config.thresholds.rejected_connections
    status = band_status(count, band)
    return CheckResult(
        name="rejected_connections",
        status=status,
        value=f"{count:.0f}",
        threshold=band_text(band),
        summary=f"{count:.0f} connection(s) rejected at maxclients since start",
        hint=None
        if status is Status.OK
        else "raise maxclients or find the client that leaks connections: redis-cli CLIENT LIST",
        metric=count,
    )
