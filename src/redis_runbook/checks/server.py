"""Availability checks: latency, loading, role/replication, keyspace, slowlog."""

from __future__ import annotations

import time

from redis_runbook import replies
from redis_runbook.checks.base import Context, band_text, banded, unknown
from redis_runbook.status import CheckResult, Status
from redis_runbook.units import format_duration

RECENT_SPIKE_S = 300


def ping_latency(ctx: Context) -> CheckResult:
    """Round-trip time of one PING on the established connection (seed §6.1: < 1 ms
    normal, 1-10 ms warning), what `redis-cli --latency` measures. Not the connection
    handshake: its time includes this host's own work and scheduling (a busy host made
    it look slow while Redis answered at once), so it is named when it took longer
    but never counted. A stall of Redis' own shows in the PING while it lasts, in
    `latency_spikes` and the slow log after it."""
    ping = ctx.snapshot.ping_ms
    if ping is None:
        return unknown("ping_latency", ctx, "PING")
    handshake = ctx.snapshot.handshake_ms or 0.0
    summary = f"PING answered in {ping:.2f} ms"
    if handshake > max(ping, ctx.config.thresholds.latency_ms.warning):
        summary += (
            f"; the connection handshake waited {handshake:.2f} ms (not counted: a stall "
            "that has ended, or this host being busy)"
        )
    return banded(
        "ping_latency",
        ping,
        ctx.config.thresholds.latency_ms,
        shown=f"{ping:.2f} ms",
        unit=" ms",
        summary=summary,
        hint=f"look for slow commands and busy scripts: {ctx.cli} SLOWLOG GET 10; "
        f"{ctx.cli} --latency",
    )


def loading(ctx: Context) -> CheckResult:
    """A server still loading its AOF/RDB answers every command with LOADING."""
    flag = ctx.field("loading")
    if flag is None:
        return unknown("loading", ctx, "INFO persistence")
    if flag == "1":
        percent = ctx.field("loading_loaded_perc") or "?"
        eta = ctx.num("loading_eta_seconds")
        eta_text = format_duration(eta) if eta is not None else "unknown"
        return CheckResult(
            name="loading",
            status=Status.CRITICAL,
            value=f"{percent} %",
            threshold="not loading",
            summary=f"loading the dataset: {percent} % done, about {eta_text} left; "
            "clients get LOADING errors until it finishes",
            hint="wait for the load to finish; re-run redis-runbook health",
        )
    if ctx.field("async_loading") == "1":
        return CheckResult(
            name="loading",
            status=Status.WARNING,
            value="async",
            threshold="not loading",
            summary="replica is loading a new dataset asynchronously (serving the old one)",
        )
    return CheckResult("loading", Status.OK, "no", "not loading", "dataset loaded")


def role(ctx: Context) -> CheckResult:
    """Master with its replica count, or replica with the state of its master link."""
    current = ctx.field("role")
    if current is None:
        return unknown("role", ctx, "INFO replication")
    if current == "master":
        replicas = int(ctx.num("connected_slaves") or 0)
        return CheckResult(
            "role", Status.OK, "master", "-", f"master with {replicas} connected replica(s)"
        )
    master = f"{ctx.field('master_host')}:{ctx.field('master_port')}"
    link = ctx.field("master_link_status")
    if link == "up":
        return CheckResult("role", Status.OK, "replica", "link up", f"replica of {master}, link up")
    down_for = ctx.num("master_link_down_since_seconds")
    since = f" for {format_duration(down_for)}" if down_for and down_for > 0 else ""
    return CheckResult(
        name="role",
        status=Status.CRITICAL,
        value="replica",
        threshold="link up",
        summary=f"replica of {master}: master link {link or 'unknown'}{since}",
        hint=f"check that {master} is up and reachable from this replica",
    )


def keyspace(ctx: Context) -> CheckResult:
    """Keys per database (informational: an empty keyspace may be a fresh
    instance or lost data; diagnose decides)."""
    if not ctx.snapshot.info:
        return unknown("keyspace", ctx, "INFO keyspace")
    dbs = replies.keyspace(ctx.snapshot.info)
    total = sum(db.keys for db in dbs)
    text = ", ".join(f"db{db.db}={db.keys} keys ({db.expires} with TTL)" for db in dbs) or "empty"
    return CheckResult("keyspace", Status.OK, f"{total} keys", "-", text, metric=float(total))


def slowlog(ctx: Context) -> CheckResult:
    """SLOWLOG length (informational; the entries are read by perf tooling)."""
    length = ctx.snapshot.slowlog_len
    if length is None:
        return unknown("slowlog", ctx, "SLOWLOG LEN")
    return CheckResult(
        name="slowlog",
        status=Status.OK,
        value=f"{length} entries",
        threshold="-",
        summary=f"{length} slow command(s) recorded",
        hint=f"{ctx.cli} SLOWLOG GET 10" if length else None,
        metric=float(length),
    )


def latency_spikes(ctx: Context) -> CheckResult:
    """LATENCY LATEST events in the last five minutes above the latency critical
    threshold (empty unless latency-monitor-threshold > 0)."""
    if "LATENCY LATEST" in ctx.snapshot.denied:
        return unknown("latency_spikes", ctx, "LATENCY LATEST")
    band = ctx.config.thresholds.latency_ms
    now = time.time()
    recent = [
        e
        for e in ctx.snapshot.latency_events
        if now - e.at <= RECENT_SPIKE_S and e.latest_ms > band.critical
    ]
    if not recent:
        monitor = ctx.snapshot.config.get("latency-monitor-threshold")
        note = " (latency monitor off)" if monitor == "0" else ""
        return CheckResult(
            "latency_spikes", Status.OK, "none", band_text(band, " ms"), f"no recent spikes{note}"
        )
    worst_event = max(recent, key=lambda e: e.latest_ms)
    return CheckResult(
        name="latency_spikes",
        status=Status.WARNING,
        value=f"{worst_event.latest_ms} ms",
        threshold=band_text(band, " ms"),
        summary=f"{len(recent)} latency event(s) in the last 5 min, worst "
        f"{worst_event.event} {worst_event.latest_ms} ms",
        hint=f"{ctx.cli} LATENCY DOCTOR",
        metric=float(worst_event.latest_ms),
    )
