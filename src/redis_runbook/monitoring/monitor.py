"""The monitor (seed §6.2): every cycle evaluates the health checks and the queue
checks, advances the alert states, and delivers what changed to every sink.

Delivery goes through an outbox kept in the state file: each notification is queued
once per sink, sent, and on failure retried with exponential backoff on later cycles
(`retry_base_seconds` doubling up to `retry_max_seconds`) until `give_up_after_hours`.
One failing sink never holds up another. A down Redis is an observation
(`redis:connection` CRITICAL), never an exception.

State that cannot be saved is never a reason to send twice or to send nothing: the
lock and the state fall back to a second location (see state.py), and the monitor
object keeps the state of its last cycle in memory, so the daemon goes on
deduplicating even when nothing can be written. Each such problem is one line in
`CycleReport.errors`."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from redis_runbook.bullmq.schedulers import expected_of
from redis_runbook.checks import run_health
from redis_runbook.config import Config
from redis_runbook.errors import RunbookError
from redis_runbook.locks import file_lock
from redis_runbook.monitoring.alerting import Notification, step
from redis_runbook.monitoring.queue_checks import (
    queue_memory,
    queue_observations,
    scheduler_observations,
)
from redis_runbook.monitoring.queue_sampler import QueueSampler
from redis_runbook.monitoring.sinks import Sink, SinkError, make_sinks
from redis_runbook.monitoring.state import MonitorState, StateFiles, StateNotSaved, fallback_root
from redis_runbook.status import CheckResult, Status, worst
from redis_runbook.target import target_display

log = logging.getLogger("redis_runbook.monitor")
ALWAYS_OBSERVED = ("connection", "authentication")


@dataclass(frozen=True)
class Delivery:
    """One attempt to send one notification to one sink."""

    sink: str
    key: str
    kind: str
    ok: bool
    error: str | None = None
    attempts: int = 1
    gave_up: bool = False


@dataclass
class CycleReport:
    """What one cycle saw and did."""

    at: float
    target: str
    status: Status
    observations: list[CheckResult]
    notifications: list[Notification] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    firing: list[str] = field(default_factory=list)
    queued: int = 0
    notes: list[str] = field(default_factory=list)
    #: Problems of the monitor itself (its state could not be saved), one line each.
    errors: list[str] = field(default_factory=list)

    @property
    def delivery_failed(self) -> bool:
        """True when some notification could not be delivered this cycle."""
        return any(not d.ok for d in self.deliveries)

    def to_json(self) -> dict[str, Any]:
        """Stable JSON (docs/json.md)."""
        return {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at)),
            "target": self.target,
            "status": self.status.name,
            "not_ok": [
                {"key": o.name, "status": o.status.name, "summary": o.summary}
                for o in self.observations
                if o.status is not Status.OK
            ],
            "firing": self.firing,
            "notifications": [n.to_json() for n in self.notifications],
            "deliveries": [d.__dict__ for d in self.deliveries],
            "queued": self.queued,
            "notes": self.notes,
            "errors": self.errors,
        }


class Monitor:
    """One target's monitor. Use as a context manager: it holds the target's monitor
    lock (a second monitor on the same target, e.g. cron next to the daemon, is
    refused) and closes its connection on exit."""

    def __init__(
        self,
        config: Config,
        env: Mapping[str, str] | None = None,
        sinks: Sequence[Sink] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.env = env
        self.target = target_display(config.target)
        self.sinks = list(make_sinks(config.alerts, env) if sinks is None else sinks)
        self.clock = clock
        self.files = StateFiles(config.runbook.state_dir, self.target)
        self.queues = QueueSampler(config, env, config.exporter.discovery_cache_seconds)
        self._held = contextlib.ExitStack()
        self._memory: MonitorState | None = None  # the last cycle's state
        self._lock_problem: str | None = None
        self._last_error: str | None = None

    def __enter__(self) -> Monitor:
        name = f"monitor {self.target}"
        lock_dir = self.config.runbook.state_dir / "locks"
        try:
            self._held.enter_context(file_lock(lock_dir, name, "monitor"))
        except OSError as exc:  # e.g. a read-only state dir: lock in the fallback dir
            # Nowhere to lock at all: alerts matter more than a duplicate from a second
            # monitor, so this one runs unlocked and says so.
            self._lock_problem = (
                f"no monitor lock: {lock_dir} cannot hold it ({exc.strerror or exc})"
            )
            root = fallback_root()
            if root is not None:
                with contextlib.suppress(OSError):
                    self._held.enter_context(file_lock(root / "locks", name, "monitor"))
                    self._lock_problem = f"lock in {root / 'locks'} ({exc.strerror or exc})"
        self._held.callback(self.queues.close)
        return self

    def __exit__(self, *exc: object) -> None:
        self._held.close()

    def observe(
        self, now: float, state: MonitorState
    ) -> tuple[list[CheckResult], tuple[str, ...], dict[str, Any]]:
        """This cycle's observations, the key scopes fully evaluated, and a history row."""
        report = run_health(self.config, self.env)
        observations = [replace(c, name=f"redis:{c.name}") for c in report.checks]
        # Down, refused or BUSY: the one result says why; nothing else can be read now.
        if {c.name for c in report.checks} & set(ALWAYS_OBSERVED):
            return observations, (), {}
        observations += [
            CheckResult(f"redis:{name}", Status.OK, summary="ok") for name in ALWAYS_OBSERVED
        ]
        info = report.snapshot.info
        row = {
            "t": round(now),
            **{
                k: _num(info.get(k))
                for k in (
                    "used_memory",
                    "maxmemory",
                    "mem_fragmentation_ratio",
                    "connected_clients",
                )
            },
        }
        scopes: tuple[str, ...] = ("redis:",)
        if self.config.monitor.queue_checks:
            expected = expected_of(self.config.bullmq.expected())
            try:
                counts = self.queues.sample(report.snapshot.clients)  # no 2nd CLIENT LIST
                missing = self.queues.missing_schedulers(expected)
            except RunbookError as exc:
                observations.append(
                    CheckResult(
                        "redis:queue_counts",
                        Status.UNKNOWN,
                        summary=exc.message,
                        hint="redis-runbook queues status",
                    )
                )
                return observations, scopes, row
            scopes += ("queue:",)
            observations += scheduler_observations(expected, missing)
            memory = {}
            for c in counts:
                observations += queue_observations(
                    c, state.queues.get(c.queue.display), now, self.config.thresholds
                )
                memory[c.queue.display] = queue_memory(c, now)
            state.queues = memory
        return observations, scopes, row

    def cycle(self) -> CycleReport:
        """Observe, advance the alerts, deliver, save. Never raises for Redis being down."""
        now = self.clock()
        state, aside = self.files.load()
        if self._memory is not None and self._memory.seq >= state.seq:
            state = self._memory  # what could not be saved is still known here
        observations, scopes, row = self.observe(now, state)
        report = CycleReport(now, self.target, worst(o.status for o in observations), observations)
        if aside is not None:
            report.notes.append(f"unreadable monitor state moved aside to {aside}")
        report.notifications = step(
            state.alerts, observations, now, self.config.alerts, self.target, scopes
        )
        for n in report.notifications:
            for sink in self.sinks:
                state.outbox.append(
                    {
                        "sink": sink.name,
                        "notification": n.to_json(),
                        "attempts": 0,
                        "next_at": now,
                        "created": now,
                    }
                )
        report.deliveries = self.deliver(state, now)
        report.queued = len(state.outbox)
        report.firing = sorted(k for k, s in state.alerts.items() if s.firing)
        self._save(state, row, report)
        return report

    def _save(self, state: MonitorState, row: dict[str, Any], report: CycleReport) -> None:
        """Save the state (or its fallback copy) and the history row; what fails is one
        line in `report.errors`, the state stays in memory either way."""
        problems = []
        try:
            problem = self.files.save(state)
        except StateNotSaved as exc:
            problem = f"{exc.message}: kept in memory only (a new run will not know it)"
        if problem:
            problems.append(problem)
        self._memory = state
        if row:
            try:
                self.files.append_history(row, self.config.monitor.history_days)
            except OSError as exc:
                problems.append(f"history not recorded ({exc.strerror or exc})")
        if self._lock_problem:
            problems.append(self._lock_problem)
        line = "; ".join(problems) + ": fix it or set [runbook] state_dir" if problems else None
        if line is not None and line != self._last_error:  # the daemon says it once
            report.errors.append(line)
        self._last_error = line

    def deliver(self, state: MonitorState, now: float) -> list[Delivery]:
        """Send every due outbox entry; failures stay queued with a later next_at."""
        sinks = {s.name: s for s in self.sinks}
        policy = self.config.alerts
        done: list[Delivery] = []
        kept: list[dict[str, Any]] = []
        for entry in state.outbox:
            sink = sinks.get(str(entry.get("sink")))
            try:
                n = Notification(**entry["notification"])
            except (KeyError, TypeError):  # written by another version: cannot be sent
                log.warning("dropping an unreadable outbox entry for %s", entry.get("sink"))
                continue
            if sink is None:  # the sink was removed from the config
                continue
            # Due, unless its retry lies ahead by no more than the longest backoff: an
            # entry further ahead was scheduled by a clock that has since jumped back.
            if now < entry["next_at"] <= now + policy.retry_max_seconds:
                kept.append(entry)
                continue
            entry["attempts"] += 1
            try:
                sink.send(n)
            except SinkError as exc:
                gave_up = now - entry["created"] >= policy.give_up_after_hours * 3600
                log.warning(
                    "%s: %s %s not delivered (attempt %d%s): %s",
                    sink.name,
                    n.kind,
                    n.key,
                    entry["attempts"],
                    ", giving up" if gave_up else "",
                    exc.message,
                )
                done.append(
                    Delivery(
                        sink.name, n.key, n.kind, False, exc.message, entry["attempts"], gave_up
                    )
                )
                if not gave_up:
                    delay = min(
                        policy.retry_base_seconds * 2 ** (entry["attempts"] - 1),
                        policy.retry_max_seconds,
                    )
                    entry["next_at"] = now + delay
                    kept.append(entry)
                continue
            done.append(Delivery(sink.name, n.key, n.kind, True, attempts=entry["attempts"]))
        state.outbox = kept
        return done

    def run_forever(self, stop: threading.Event, on_cycle: Callable[[CycleReport], None]) -> None:
        """A cycle every `interval_seconds` (on a fixed schedule, whatever a cycle
        takes) until `stop` is set. An unexpected error is logged and the loop goes on."""
        interval = self.config.monitor.interval_seconds
        next_at = time.monotonic()
        while not stop.is_set():
            try:
                on_cycle(self.cycle())
            except Exception:  # a daemon that dies on a bug stops alerting
                log.exception("monitor cycle failed; the next one runs on schedule")
            next_at += interval
            now = time.monotonic()
            if next_at < now:  # a cycle overran: skip the missed slots
                next_at = now + interval - (now - next_at) % interval
            stop.wait(next_at - now)


def _num(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
