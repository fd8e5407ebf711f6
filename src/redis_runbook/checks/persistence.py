"""Persistence checks: AOF on and writing, RDB saves succeeding, AOF rewrite time,
age of the last RDB save against the backup schedule."""

from __future__ import annotations

import time

from redis_runbook.checks.base import Context, band_text, banded, unknown
from redis_runbook.status import CheckResult, Status
from redis_runbook.units import format_duration

SCHEDULE_HOURS = {"daily": 24.0, "hourly": 1.0}


def aof(ctx: Context) -> CheckResult:
    """AOF enabled when expected, last write ok, last rewrite ok, fsync policy as
    expected (seed: appendonly yes, appendfsync everysec)."""
    enabled = ctx.field("aof_enabled")
    if enabled is None:
        return unknown("aof", ctx, "INFO persistence")
    expect = ctx.config.server
    if ctx.field("aof_last_write_status") == "err":
        return CheckResult(
            name="aof",
            status=Status.CRITICAL,
            value="write error",
            threshold="write ok",
            summary="the last AOF write failed: writes are refused with MISCONF",
            hint="check free space and permissions of the data dir, then the Redis log",
        )
    if enabled != "1":
        status = Status.WARNING if expect.appendonly else Status.OK
        return CheckResult(
            name="aof",
            status=status,
            value="off",
            threshold="on" if expect.appendonly else "off",
            summary="AOF is off: a crash loses every write since the last RDB snapshot"
            if expect.appendonly
            else "AOF off, as configured",
            hint=f"{ctx.cli} CONFIG SET appendonly yes; then set it in redis.conf"
            if expect.appendonly
            else None,
        )
    problems = []
    if ctx.field("aof_last_bgrewrite_status") == "err":
        problems.append("the last AOF rewrite failed")
    fsync = ctx.snapshot.config.get("appendfsync")
    if fsync is not None and fsync != expect.appendfsync:
        problems.append(f"appendfsync is {fsync}, expected {expect.appendfsync}")
    delayed = ctx.num("aof_delayed_fsync") or 0
    summary = "AOF on, last write ok" + (f", {delayed:.0f} delayed fsync(s)" if delayed else "")
    return CheckResult(
        name="aof",
        status=Status.WARNING if problems else Status.OK,
        value="on",
        threshold=f"on, appendfsync {expect.appendfsync}",
        summary="; ".join(problems) if problems else summary,
        hint="read the Redis log for 'Background AOF rewrite' errors and check disk space"
        if problems
        else None,
    )


def rdb(ctx: Context) -> CheckResult:
    """The last BGSAVE succeeded (a failed one makes Redis refuse writes with
    MISCONF while stop-writes-on-bgsave-error is on)."""
    status_text = ctx.field("rdb_last_bgsave_status")
    if status_text is None:
        return unknown("rdb", ctx, "INFO persistence")
    in_progress = ctx.field("rdb_bgsave_in_progress") == "1"
    if status_text == "err":
        return CheckResult(
            name="rdb",
            status=Status.CRITICAL,
            value="bgsave error",
            threshold="status ok",
            summary="the last BGSAVE failed: writes may be refused with MISCONF",
            hint="check disk space, permissions and fork errors in the Redis log",
        )
    changes = ctx.num("rdb_changes_since_last_save") or 0
    return CheckResult(
        name="rdb",
        status=Status.OK,
        value="ok",
        threshold="status ok",
        summary=f"last BGSAVE ok, {changes:.0f} change(s) since"
        + (", BGSAVE running now" if in_progress else ""),
    )


def aof_rewrite_time(ctx: Context) -> CheckResult:
    """Duration of the running (or else the last) AOF rewrite (seed §6.1: 10 / 60 s)."""
    band = ctx.config.thresholds.aof_rewrite_seconds
    running = ctx.field("aof_rewrite_in_progress") == "1"
    seconds = ctx.num("aof_current_rewrite_time_sec" if running else "aof_last_rewrite_time_sec")
    if seconds is None:
        return unknown("aof_rewrite_time", ctx, "INFO persistence")
    if seconds < 0:
        return CheckResult(
            "aof_rewrite_time", Status.OK, "none", band_text(band, " s"), "no AOF rewrite yet"
        )
    what = "running AOF rewrite for" if running else "last AOF rewrite took"
    return banded(
        "aof_rewrite_time",
        seconds,
        band,
        shown=f"{seconds:.0f} s",
        unit=" s",
        summary=f"{what} {format_duration(seconds)}",
        hint="slow disk or a large dataset: check disk latency and latest_fork_usec",
    )


def rdb_age(ctx: Context) -> CheckResult:
    """Age of the last successful RDB save against the snapshot schedule (the
    seed's daily 04:00 RDB: warning after 26 h, critical after 50 h)."""
    schedule = ctx.config.server.rdb_schedule
    band = ctx.config.thresholds.rdb_age_hours
    if schedule == "none":
        return CheckResult("rdb_age", Status.OK, "n/a", "no RDB schedule", "RDB schedule: none")
    last = ctx.num("rdb_last_save_time")
    if last is None:
        return unknown("rdb_age", ctx, "INFO persistence")
    hours = max(0.0, (time.time() - last) / 3600)
    return banded(
        "rdb_age",
        hours,
        band,
        shown=f"{hours:.1f} h",
        unit=" h",
        summary=f"last RDB save {format_duration(hours * 3600)} ago ({schedule} schedule)",
        hint=f"the scheduled snapshot did not run: {ctx.cli} BGSAVE and check the cron/backup job",
    )
