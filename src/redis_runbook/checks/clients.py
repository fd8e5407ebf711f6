"""Client checks: connected, blocked, rejected connections."""

from __future__ import annotations

from collections import Counter

from redis_runbook.checks.base import Context, banded, unknown
from redis_runbook.status import CheckResult


def connected_clients(ctx: Context) -> CheckResult:
    """Client connections (seed §6.1: > 200 warning, > 500 critical)."""
    count = ctx.num("connected_clients")
    if count is None:
        return unknown("connected_clients", ctx, "INFO clients")
    maxclients = ctx.num("maxclients")
    of_max = f" of maxclients {maxclients:.0f}" if maxclients else ""
    return banded(
        "connected_clients",
        count,
        ctx.config.thresholds.connected_clients,
        shown=f"{count:.0f}",
        summary=f"{count:.0f} client(s) connected{of_max}",
        hint=f"look for connection leaks by name and address: {ctx.cli} CLIENT LIST",
    )


def _blocked_commands(ctx: Context) -> str:
    if ctx.snapshot.clients is None:
        return ""
    counts = Counter(c.get("cmd", "?") for c in ctx.snapshot.clients if "b" in c.get("flags", ""))
    return ", ".join(f"{cmd} {n}" for cmd, n in counts.most_common(4))


def blocked_clients(ctx: Context) -> CheckResult:
    """Clients blocked in BLPOP/BZPOPMIN/XREAD... BullMQ workers block on
    BZPOPMIN by design, so a moderate number is normal."""
    count = ctx.num("blocked_clients")
    if count is None:
        return unknown("blocked_clients", ctx, "INFO clients")
    commands = _blocked_commands(ctx)
    return banded(
        "blocked_clients",
        count,
        ctx.config.thresholds.blocked_clients,
        shown=f"{count:.0f}",
        summary=f"{count:.0f} client(s) blocked" + (f" ({commands})" if commands else ""),
        hint=f"{ctx.cli} CLIENT LIST | grep 'flags=b'; workers block on bzpopmin by design, "
        "anything else is suspect",
    )


def rejected_connections(ctx: Context) -> CheckResult:
    """Connections refused because maxclients was reached, since the start."""
    count = ctx.num("rejected_connections")
    if count is None:
        return unknown("rejected_connections", ctx, "INFO stats")
    return banded(
        "rejected_connections",
        count,
        ctx.config.thresholds.rejected_connections,
        shown=f"{count:.0f}",
        summary=f"{count:.0f} connection(s) rejected at maxclients since start",
        hint=f"raise maxclients or find the client that leaks connections: {ctx.cli} CLIENT LIST",
    )
