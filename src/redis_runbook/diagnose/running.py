"""Rules for a server whose process runs: writes refused (A), out of memory (B),
degraded (C) — from the health checks of one snapshot, the log, the kernel log and,
when the server answers nothing, what it says to the stall probe."""

from __future__ import annotations

from redis_runbook.diagnose.evidence import Evidence
from redis_runbook.diagnose.scenario import (
    CMD_BLOCKED,
    CMD_CLIENTS,
    CMD_HEALTH,
    CMD_OOM,
    CMD_PERF,
    Scenario,
    bad_check,
    disk_line,
    find_check,
)
from redis_runbook.errors import TargetUnavailable
from redis_runbook.replies import number
from redis_runbook.stall import pause_hint
from redis_runbook.status import Status
from redis_runbook.target import redis_cli_prefix

SCRIPT_ADVICE = (
    "SCRIPT KILL ends a script that has not written yet (FUNCTION KILL a function); one "
    "that wrote can only be stopped with SHUTDOWN NOSAVE (writes since the last save are "
    "lost); a long command (not a script) ends on its own: SCRIPT KILL then says NOTBUSY"
)
#: Works on a paused or stalled server: it reports within the timeout, every 2 s.
CMD_WATCH = f"{CMD_HEALTH} --watch 2"


def _reply(ev: Evidence) -> str:
    return ev.snapshot.ping_reply or ""


def writes_refused(ev: Evidence) -> Scenario | None:
    """A server answering MISCONF refuses writes (and even PING): down for clients."""
    reply = _reply(ev)
    if not reply.startswith("MISCONF"):
        return None
    logs = ev.logs
    lines = [f"PING: {reply.splitlines()[0][:200]}"]
    for name in ("aof", "rdb"):
        check = bad_check(ev, name, Status.CRITICAL)
        if check:
            lines.append(f"{name}: {check.summary}")
    lines += [f"log: {m.text}" for m in logs.find("aof-write-error", "bgsave-error", "no-space")][
        -4:
    ]
    lines.append(disk_line(ev))
    enospc = "No space left on device" in reply or logs.has("no-space") or ev.disk.full
    if enospc:
        return Scenario(
            "A",
            "disk-full",
            "writes are refused (MISCONF): the disk is full",
            tuple(lines),
            CMD_HEALTH,
            f"free space on the filesystem of {ev.disk.path} (df -h); Redis retries the AOF "
            "every second and accepts writes again by itself ('AOF write error looks solved'); "
            f"after an RDB error run `{redis_cli_prefix(ev.config.target)} BGSAVE`",
        )
    return Scenario(
        "A",
        "write-error",
        "writes are refused (MISCONF): Redis cannot persist",
        tuple(lines),
        CMD_HEALTH,
        "fix what the log lines say (permissions of the data dir, fork failures), then "
        f"`{redis_cli_prefix(ev.config.target)} BGSAVE`; Redis accepts writes again once a "
        "save succeeds",
    )


def unresponsive(ev: Evidence) -> Scenario | None:
    """The process runs and accepts TCP but answers nothing within the connect
    timeout (seed: slow/timeout). What holds it is what Redis says to the stall
    probe (stall.py): nothing at all, or BUSY — a script or long command holds the
    event loop; an unknown command refused but PING held — CLIENT PAUSE. Not the
    CPU share, which a loaded host makes meaningless."""
    error = ev.snapshot.error
    if not isinstance(error, TargetUnavailable) or "no answer in time" not in error.message:
        return None
    timeout = ev.config.target.connect_timeout
    lines = [f"connection: {error.message}", f"service: {ev.state.state.value} ({ev.state.detail})"]
    probe = ev.stall
    if probe is not None:
        lines.append(probe.evidence)
    cpu = ev.cpu
    if cpu is not None:
        lines.append(f"pid {cpu.pid}: state {cpu.state or '?'}, {cpu.percent:.0f} % CPU")
    cli = probe.redis_cli if probe is not None else redis_cli_prefix(ev.config.target)
    if probe is not None and probe.kind in ("busy", "held"):
        return Scenario(
            "C",
            "busy-script",
            "Redis is busy: a script or a long command holds the event loop",
            tuple(lines),
            f"{cli} SCRIPT KILL",
            SCRIPT_ADVICE,
        )
    if probe is not None and probe.kind == "paused":
        return Scenario(
            "C",
            "paused",
            "clients are paused (CLIENT PAUSE): Redis holds every command for now",
            tuple(lines),
            CMD_WATCH,
            pause_hint(cli),
        )
    return Scenario(
        "C",
        "unresponsive",
        f"Redis runs but answers nothing within {timeout:g} s",
        tuple(lines),
        CMD_WATCH,
        f"{SCRIPT_ADVICE}; {pause_hint(cli)}",
    )


def oom_scenarios(ev: Evidence) -> list[Scenario]:
    """B: maxmemory reached (OOM replies) or memory past the critical threshold, or a
    kernel OOM kill just before the current start."""
    found = []
    memory = find_check(ev, "memory")
    rejected = bad_check(ev, "oom_rejections")
    critical = bad_check(ev, "memory", Status.CRITICAL)
    policy = find_check(ev, "maxmemory_policy")
    context = [f"{c.name}: {c.summary}" for c in (memory, policy) if c is not None]
    growth = ev.oom_growth or 0
    if rejected is not None or growth > 0:
        lines = [f"oom_rejections: {rejected.summary}"] if rejected is not None else []
        if growth > 0:
            lines.append(f"errorstats: {growth} more write(s) refused with OOM while diagnosing")
        found.append(
            Scenario(
                "B",
                "oom-rejections",
                "writes are refused with OOM: maxmemory is reached",
                (*lines, *context),
                CMD_OOM,
                "free rebuildable keys (cache:*, ratelimit:*) or raise maxmemory",
            )
        )
    elif critical is not None:
        found.append(
            Scenario(
                "B",
                "memory-critical",
                "memory is close to maxmemory: writes will soon be refused",
                tuple(context),
                CMD_OOM,
                "free rebuildable keys (cache:*, ratelimit:*) or raise maxmemory",
            )
        )
    uptime = number(ev.snapshot.info, "uptime_in_seconds")
    recent = [
        k
        for k in ev.kernel.kills
        if k.age_s is not None and uptime is not None and k.age_s <= uptime + 120
    ]
    if recent:
        found.append(
            Scenario(
                "B",
                "oom-killed",
                "the kernel OOM-killed Redis; it has been restarted since",
                (f"kernel: {recent[-1].line}", *context),
                CMD_OOM,
                "give the container/host more memory than maxmemory plus overhead (seed §3.2)",
            )
        )
    return found


def degraded_scenarios(ev: Evidence) -> list[Scenario]:
    """C: slow, busy script, loading, blocked clients, too many clients, fragmentation."""
    found = []
    reply = _reply(ev)
    if reply.startswith("BUSY"):
        found.append(
            Scenario(
                "C",
                "busy-script",
                "a script runs past busy-reply-threshold",
                (f"PING: {reply}",),
                f"{redis_cli_prefix(ev.config.target)} SCRIPT KILL",
                SCRIPT_ADVICE,
            )
        )
    loading = bad_check(ev, "loading", Status.CRITICAL)
    if loading is not None or reply.startswith("LOADING"):
        summary = loading.summary if loading else reply
        found.append(
            Scenario(
                "C",
                "loading",
                "Redis is loading its dataset",
                (summary,),
                f"{CMD_HEALTH} --watch 2",
                "wait: clients get LOADING until done",
            )
        )
    paused = ev.snapshot.info.get("paused_reason") or ev.snapshot.info.get("paused_actions")
    if paused and paused not in ("none", ""):
        found.append(
            Scenario(
                "C",
                "paused",
                "clients are paused (CLIENT PAUSE)",
                (f"INFO: paused {paused}",),
                f"{redis_cli_prefix(ev.config.target)} CLIENT UNPAUSE",
                "CLIENT UNPAUSE lifts it (this server answers, so the pause is not PAUSE ALL)",
            )
        )
    slow = bad_check(ev, "ping_latency", Status.CRITICAL)
    if slow is not None and not reply.startswith("BUSY"):
        lines = [f"ping_latency: {slow.summary}"]
        lines += [
            f"{c.name}: {c.summary}"
            for c in (find_check(ev, "slowlog"), bad_check(ev, "latency_spikes"))
            if c
        ]
        found.append(
            Scenario(
                "C",
                "slow",
                "Redis answers slowly",
                tuple(lines),
                CMD_PERF,
                "look for slow commands (SLOWLOG) and busy scripts",
            )
        )
    blocked = bad_check(ev, "blocked_clients")
    if blocked is not None:
        found.append(
            Scenario(
                "C",
                "blocked-clients",
                "many clients are blocked",
                (f"blocked_clients: {blocked.summary}",),
                CMD_BLOCKED,
                "BullMQ workers block on BZPOPMIN by design; others are suspect",
            )
        )
    crowd = [
        c
        for c in (
            bad_check(ev, "connected_clients", Status.CRITICAL),
            bad_check(ev, "rejected_connections", Status.CRITICAL),
        )
        if c
    ]
    if crowd:
        found.append(
            Scenario(
                "C",
                "clients",
                "too many client connections",
                tuple(f"{c.name}: {c.summary}" for c in crowd),
                CMD_CLIENTS,
                "look for connection leaks by client name and address",
            )
        )
    fragmentation = bad_check(ev, "fragmentation")
    if fragmentation is not None:
        found.append(
            Scenario(
                "C",
                "fragmentation",
                "memory is fragmented",
                (f"fragmentation: {fragmentation.summary}",),
                CMD_PERF,
                fragmentation.hint,
            )
        )
    return found
