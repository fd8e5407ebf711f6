"""`perf report` (seed §3.3, scenario C): what makes Redis slow, read-only, in
one pipelined round trip — SLOWLOG GET, LATENCY LATEST + LATENCY DOCTOR, MEMORY
DOCTOR, fragmentation with advice (active defrag or a restart window), and the
clients blocked per command. A command the server refuses (ACL, renamed) is
recorded in `denied`; the rest of the report still stands."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from redis_runbook.bullmq.keys import WORKER_WAITS
from redis_runbook.config import Config
from redis_runbook.memory import MemoryFigures, read_memory
from redis_runbook.replies import info_fields, parse_client_list
from redis_runbook.snapshot import LatencyEvent
from redis_runbook.stall import stall_errors
from redis_runbook.target import make_client, redis_cli_prefix, target_display
from redis_runbook.units import format_bytes

SLOWLOG_COUNT = 10
MAX_COMMAND_CHARS = 200


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


def _arg(value: Any) -> str:
    text = _text(value)
    return (
        json.dumps(text, ensure_ascii=False) if not text or any(c.isspace() for c in text) else text
    )


@dataclass(frozen=True)
class SlowEntry:
    """One SLOWLOG GET row."""

    id: int
    time: int
    duration_us: int
    command: str
    client_addr: str
    client_name: str

    @classmethod
    def parse(cls, row: list[Any]) -> SlowEntry:
        """From the raw reply row [id, time, µs, [args], addr, name]."""
        args = row[3] if len(row) > 3 and isinstance(row[3], list) else []
        command = " ".join(_arg(a) for a in args)
        if len(command) > MAX_COMMAND_CHARS:
            command = command[: MAX_COMMAND_CHARS - 1] + "…"
        return cls(
            id=int(row[0]),
            time=int(row[1]),
            duration_us=int(row[2]),
            command=command,
            client_addr=_text(row[4]) if len(row) > 4 else "",
            client_name=_text(row[5]) if len(row) > 5 else "",
        )


@dataclass
class PerfReport:
    """Everything `perf report` shows."""

    target: str
    slowlog: list[SlowEntry] = field(default_factory=list)
    slowlog_len: int | None = None
    slowlog_threshold_us: int | None = None
    latency_events: list[LatencyEvent] = field(default_factory=list)
    latency_threshold_ms: int | None = None
    latency_doctor: str = ""
    memory_doctor: str = ""
    memory: MemoryFigures | None = None
    activedefrag: str | None = None
    fragmentation: str = ""
    blocked_total: int | None = None
    blocked_by_command: dict[str, int] = field(default_factory=dict)
    advice: list[str] = field(default_factory=list)
    denied: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (docs/json.md, `perf report`)."""
        memory = self.memory
        return {
            "target": self.target,
            "slowlog": [e.__dict__ for e in self.slowlog],
            "slowlog_len": self.slowlog_len,
            "slowlog_threshold_us": self.slowlog_threshold_us,
            "latency_latest": [e.__dict__ for e in self.latency_events],
            "latency_threshold_ms": self.latency_threshold_ms,
            "latency_doctor": self.latency_doctor,
            "memory_doctor": self.memory_doctor,
            "fragmentation": {
                "ratio": memory.fragmentation_ratio if memory else None,
                "bytes": memory.fragmentation_bytes if memory else None,
                "used_memory": memory.used if memory else None,
                "used_memory_rss": memory.rss if memory else None,
                "activedefrag": self.activedefrag,
                "advice": self.fragmentation,
            },
            "blocked_clients": {"total": self.blocked_total, "by_command": self.blocked_by_command},
            "advice": self.advice,
            "denied": self.denied,
        }


QUERIES: list[tuple[str, tuple[str, ...]]] = [
    ("SLOWLOG GET", ("SLOWLOG", "GET", str(SLOWLOG_COUNT))),
    ("SLOWLOG LEN", ("SLOWLOG", "LEN")),
    ("LATENCY LATEST", ("LATENCY", "LATEST")),
    ("LATENCY DOCTOR", ("LATENCY", "DOCTOR")),
    ("MEMORY DOCTOR", ("MEMORY", "DOCTOR")),
    ("CLIENT LIST", ("CLIENT", "LIST")),
    ("INFO clients", ("INFO", "clients")),
    ("CONFIG GET activedefrag", ("CONFIG", "GET", "activedefrag")),
    ("CONFIG GET slowlog-log-slower-than", ("CONFIG", "GET", "slowlog-log-slower-than")),
    ("CONFIG GET latency-monitor-threshold", ("CONFIG", "GET", "latency-monitor-threshold")),
]


def _config_value(reply: Any) -> str | None:
    if isinstance(reply, dict):
        values = list(reply.values())
        return _text(values[0]) if values else None
    if isinstance(reply, list) and len(reply) >= 2:
        return _text(reply[1])
    return None


def _absorb(report: PerfReport, name: str, reply: Any) -> None:
    if name == "SLOWLOG GET":
        report.slowlog = [SlowEntry.parse(r) for r in reply if isinstance(r, list)]
    elif name == "SLOWLOG LEN":
        report.slowlog_len = int(reply)
    elif name == "LATENCY LATEST":
        report.latency_events = [
            LatencyEvent(_text(r[0]), int(r[1]), int(r[2]), int(r[3]))
            for r in reply
            if isinstance(r, list) and len(r) >= 4
        ]
    elif name == "LATENCY DOCTOR":
        report.latency_doctor = _text(reply).strip()
    elif name == "MEMORY DOCTOR":
        report.memory_doctor = _text(reply).strip()
    elif name == "CLIENT LIST":
        blocked = [c for c in parse_client_list(_text(reply)) if "b" in c.get("flags", "")]
        report.blocked_by_command = dict(Counter(c.get("cmd", "?") for c in blocked).most_common())
    elif name == "INFO clients":
        value = info_fields(reply).get("blocked_clients")
        report.blocked_total = int(value) if value and value.isdigit() else None
    elif name.startswith("CONFIG GET"):
        value = _config_value(reply)
        if name.endswith("activedefrag"):
            report.activedefrag = value
        elif value is not None and value.lstrip("-").isdigit():
            if name.endswith("slowlog-log-slower-than"):
                report.slowlog_threshold_us = int(value)
            else:
                report.latency_threshold_ms = int(value)


def fragmentation_advice(memory: MemoryFigures, activedefrag: str | None, config: Config) -> str:
    """What to do about mem_fragmentation_ratio (seed §3.3 steps 3-4)."""
    ratio, wasted = memory.fragmentation_ratio, memory.fragmentation_bytes
    band = config.thresholds.fragmentation_ratio
    floor = config.thresholds.fragmentation_min_bytes
    if ratio is None:
        return "INFO memory has no mem_fragmentation_ratio: nothing to judge"
    wasted = wasted if wasted is not None else memory.rss - memory.used
    if ratio < 1 and memory.used - memory.rss > floor:
        return (
            f"ratio {ratio:.2f} < 1: {format_bytes(memory.used - memory.rss)} of Redis' memory "
            "is swapped out, which makes every command slow: check swap (free -m, vmstat 1) "
            "and give the host or container more memory"
        )
    if ratio <= band.warning or wasted <= floor:
        why = "" if ratio <= band.warning else f" (only {format_bytes(wasted)} wasted)"
        return f"ratio {ratio:.2f}{why}: no action needed"
    wasted_text = f"ratio {ratio:.2f}, {format_bytes(wasted)} wasted"
    restart = (
        "restart in a maintenance window to reclaim it: redis-runbook recover restart "
        "(SHUTDOWN SAVE, reload, keys verified)"
    )
    if activedefrag == "yes":
        return f"{wasted_text} with activedefrag already on: {restart}"
    return (
        f"{wasted_text}: enable active defragmentation: "
        f"{redis_cli_prefix(config.target)} CONFIG SET activedefrag yes "
        "(and `activedefrag yes` in redis.conf to keep it; it needs Redis' bundled jemalloc — "
        f"if the server refuses, {restart})"
    )


def _advice(report: PerfReport, config: Config) -> list[str]:
    advice = []
    if report.slowlog:
        slowest = max(report.slowlog, key=lambda e: e.duration_us)
        advice.append(
            f"{report.slowlog_len or len(report.slowlog)} slow command(s) logged; the slowest "
            f"took {slowest.duration_us / 1000:.1f} ms: {slowest.command[:80]} — find its "
            f"caller ({slowest.client_addr} {slowest.client_name}) and make it cheaper "
            "(SCAN instead of KEYS, smaller batches, UNLINK instead of DEL)"
        )
    if report.latency_events:
        worst = max(report.latency_events, key=lambda e: e.max_ms)
        advice.append(
            f"latency spikes recorded; worst: {worst.event} {worst.max_ms} ms — "
            "read LATENCY DOCTOR below"
        )
    if report.memory and report.memory.full:
        advice.append("memory is at maxmemory (writes get OOM): redis-runbook recover oom")
    others = {c: n for c, n in report.blocked_by_command.items() if c.lower() not in WORKER_WAITS}
    if others:
        text = ", ".join(f"{c} {n}" for c, n in others.items())
        advice.append(
            f"clients blocked outside the BullMQ worker waits: {text} — inspect with "
            "redis-runbook clients list --blocked, then clients kill --id N if they are stuck"
        )
    total = report.blocked_total or 0
    if total > config.thresholds.blocked_clients.warning:
        advice.append(
            f"{total} blocked clients (threshold {config.thresholds.blocked_clients.warning:g})"
        )
    if report.fragmentation and "no action" not in report.fragmentation:
        advice.append("fragmentation: " + report.fragmentation)
    return advice


def perf_report(config: Config) -> PerfReport:
    """Read everything in one pipeline. Raises TargetUnavailable / AuthFailed when
    the server cannot be reached, ServerBusy / ServerPaused (hinting SCRIPT KILL or
    how to see the pause end) when a script holds it or clients are paused; a
    refused command only empties its part."""
    where = target_display(config.target)
    report = PerfReport(target=where)
    client = make_client(config.target, decode=False)
    try:
        with stall_errors(config.target, "perf report"):
            pipe = client.pipeline(transaction=False)
            for _name, command in QUERIES:
                pipe.execute_command(*command)
            replies = pipe.execute(raise_on_error=False)
            report.memory = read_memory(client)
    finally:
        client.close()
    for (name, _command), reply in zip(QUERIES, replies, strict=True):
        if isinstance(reply, Exception):
            report.denied[name] = _text(reply).splitlines()[0] if str(reply) else "refused"
            continue
        _absorb(report, name, reply)
    report.fragmentation = fragmentation_advice(report.memory, report.activedefrag, config)
    report.advice = _advice(report, config)
    return report
