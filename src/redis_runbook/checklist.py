"""The prevention checklists (seed §6.4): every item that can be checked is checked;
the rest are listed for a person to tick.

- daily: memory < 70 %, AOF writing, connected clients (the health checks), and the
  expected BullMQ job schedulers when the config names some;
- weekly: slow log patterns, the newest backup against the RPO, fragmentation;
- monthly: a restore drill (`backup verify` on the newest archive), the memory growth
  trend from the monitor's history, and the running Redis against the version the
  local package manager offers."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis

from redis_runbook.backup import make_backend
from redis_runbook.backup.verify import DRILL_WORDS, drill
from redis_runbook.bullmq.schedulers import (
    MISSING_HINT,
    expected_of,
    missing_schedulers,
    missing_sentence,
)
from redis_runbook.checks import evaluate
from redis_runbook.config import Config
from redis_runbook.defaults import Period
from redis_runbook.errors import RunbookError
from redis_runbook.monitoring.state import StateFiles
from redis_runbook.perf import SlowEntry
from redis_runbook.service.base import run_command
from redis_runbook.snapshot import Snapshot, take_snapshot
from redis_runbook.status import CheckResult, Status, worst
from redis_runbook.target import make_client, redis_errors, target_display

T = TypeVar("T")

DAY = 86_400.0
MIN_TREND_SPAN_DAYS = 1.0
SLOWLOG_SAMPLE = 128


@dataclass(frozen=True)
class Manual:
    """A line for a person to tick: what the tool cannot check."""

    title: str
    detail: str = "to do by hand"


#: One checklist line: a check the tool made (named by its title) or a manual one.
Line = CheckResult | Manual


def line_json(line: Line) -> dict[str, Any]:
    """Stable JSON of one line (docs/json.md); a manual line's status is MANUAL."""
    if isinstance(line, Manual):
        return {"title": line.title, "status": "MANUAL", "detail": line.detail, "hint": None}
    return {
        "title": line.name,
        "status": line.status.name,
        "detail": line.summary,
        "hint": line.hint,
    }


def _item(title: str, status: Status, detail: str, hint: str | None = None) -> CheckResult:
    """A line the tool checked."""
    return CheckResult(title, status, summary=detail, hint=hint)


@dataclass
class Checklist:
    """A period's lines, in the seed's order, then the manual ones."""

    period: Period
    target: str
    items: list[Line] = field(default_factory=list)

    @property
    def checked(self) -> list[CheckResult]:
        """The lines the tool checked."""
        return [i for i in self.items if isinstance(i, CheckResult)]

    @property
    def status(self) -> Status:
        """The worst checked line (manual lines do not count)."""
        return worst(i.status for i in self.checked)

    def to_json(self) -> dict[str, Any]:
        """Stable JSON (docs/json.md)."""
        return {
            "period": self.period,
            "target": self.target,
            "status": self.status.name,
            "exit_code": int(self.status),
            "items": [line_json(i) for i in self.items],
        }


def _from_check(title: str, result: CheckResult) -> CheckResult:
    return _item(
        title, result.status, f"{result.value} ({result.threshold}): {result.summary}", result.hint
    )


def _checks(snapshot: Snapshot, config: Config, names: Mapping[str, str]) -> list[CheckResult]:
    results = {r.name: r for r in evaluate(snapshot, config)}
    if set(names) - set(results):  # down, refused or BUSY: the one result says why
        down = next(iter(results.values()))
        return [_item(title, down.status, down.summary, down.hint) for title in names.values()]
    return [_from_check(title, results[name]) for name, title in names.items()]


def _read(config: Config, title: str, read: Callable[[redis.Redis], T]) -> T | CheckResult:
    """What `read` gets from the target over a bytes client; an UNKNOWN item titled
    `title` when the client cannot be made (a secret source fails) or Redis errors."""
    try:
        client = make_client(config.target, decode=False)
    except RunbookError as exc:
        return _item(title, Status.UNKNOWN, exc.message, exc.hint)
    try:
        with redis_errors(target_display(config.target)):
            return read(client)
    except RunbookError as exc:
        return _item(title, Status.UNKNOWN, exc.message, exc.hint)
    finally:
        client.close()


def expected_schedulers(config: Config) -> CheckResult:
    """Every `[[bullmq.expected_schedulers]]` entry is in its queue's `repeat` set
    (one pipelined ZSCORE each); CRITICAL when one is missing, as in the monitor."""
    title = "Check the expected BullMQ job schedulers are registered"
    expected = expected_of(config.bullmq.expected())
    missing = _read(config, title, lambda client: missing_schedulers(client, expected))
    if isinstance(missing, CheckResult):
        return missing
    sentence = missing_sentence(missing, len(expected))
    if not missing:
        return _item(title, Status.OK, sentence)
    return _item(title, Status.CRITICAL, sentence, MISSING_HINT)


def slowlog_patterns(config: Config) -> CheckResult:
    """The commands that fill the slow log, by name (the weekly "patterns"): the last
    128 entries, leaving out the tool's own connections."""
    title = "Review slow log for patterns"
    rows: Any = _read(
        config, title, lambda client: client.execute_command("SLOWLOG", "GET", SLOWLOG_SAMPLE)
    )
    if isinstance(rows, CheckResult):
        return rows
    own = config.target.client_name
    entries = [e for e in map(SlowEntry.parse, rows) if e.client_name != own]
    if not entries:
        return _item(title, Status.OK, "no slow commands in the slow log")
    by_command = Counter(e.command.split(" ", 1)[0].upper() for e in entries)
    slowest = max(e.duration_us for e in entries)
    top = ", ".join(f"{cmd} ×{n}" for cmd, n in by_command.most_common(5))
    return _item(
        title,
        Status.WARNING,
        f"{len(entries)} of the last {len(rows)} entries; slowest {slowest / 1000:.1f} ms; "
        f"by command: {top}",
        "redis-runbook perf report",
    )


def _no_repository(title: str) -> CheckResult:
    return _item(
        title,
        Status.UNKNOWN,
        "no [backup] repository configured",
        "configure [backup] (docs/configuration.md), then redis-runbook backup create",
    )


def backup_completion(config: Config) -> CheckResult:
    """The newest archive's age against `[backup] rpo_hours`."""
    title = "Verify backup completion"
    if not config.backup.repository:
        return _no_repository(title)
    try:
        newest = make_backend(config.backup).find("latest")
    except RunbookError as exc:
        return _item(title, Status.CRITICAL, exc.message, exc.hint)
    age, rpo = newest.age_hours(), config.backup.rpo_hours
    status = Status.OK if age <= rpo else Status.WARNING if age <= 2 * rpo else Status.CRITICAL
    return _item(
        title,
        status,
        f"newest archive {newest.name} is {age:.1f} h old (RPO {rpo:g} h)",
        None if status is Status.OK else "redis-runbook backup create",
    )


def restore_drill(config: Config) -> CheckResult:
    """`backup verify` on the newest archive, in a throwaway server."""
    title = "Test restore from backup"
    if not config.backup.repository:
        return _no_repository(title)
    try:
        report = drill(
            make_backend(config.backup), "latest", config.categories, config.backup.rpo_hours
        )
    except RunbookError as exc:
        return _item(title, Status.CRITICAL, exc.message, exc.hint)
    status = report.status
    detail = f"{report.archive.name}: {DRILL_WORDS[status]}" + (
        f" ({report.reason})" if report.reason else ""
    )
    return _item(
        title, status, detail, None if status is Status.OK else "redis-runbook backup verify"
    )


def memory_trend(config: Config, now: float | None = None) -> CheckResult:
    """Memory growth per day from the monitor's history (least squares over the last
    30 days), and when the critical threshold would be reached at that rate."""
    title = "Review memory growth trend"
    files = StateFiles(config.runbook.state_dir, target_display(config.target))
    now = time.time() if now is None else now
    points = [
        (float(r["t"]), float(r["used_memory"]), r.get("maxmemory"))
        for r in files.history()
        if isinstance(r.get("t"), int | float)
        and isinstance(r.get("used_memory"), int | float)
        and r["t"] >= now - 30 * DAY
    ]
    if len(points) < 2 or (points[-1][0] - points[0][0]) / DAY < MIN_TREND_SPAN_DAYS:
        return _item(
            title,
            Status.UNKNOWN,
            f"not enough monitor history ({len(points)} samples; needs a day or more)",
            "run redis-runbook monitor (daemon or cron) to record history",
        )
    n = len(points)
    mean_t = sum(p[0] for p in points) / n
    mean_m = sum(p[1] for p in points) / n
    var = sum((p[0] - mean_t) ** 2 for p in points)
    slope = sum((p[0] - mean_t) * (p[1] - mean_m) for p in points) / var  # bytes per second
    per_day = slope * DAY
    used, maxmemory = points[-1][1], points[-1][2]
    detail = f"{per_day / 2**20:+.1f} MiB/day over {(points[-1][0] - points[0][0]) / DAY:.1f} days"
    if not maxmemory or per_day <= 0:
        return _item(title, Status.OK, detail + ("" if maxmemory else "; no maxmemory set"))
    limit = maxmemory * config.thresholds.memory_pct.critical / 100
    days = max(0.0, (limit - used) / per_day)
    status = Status.CRITICAL if days < 7 else Status.WARNING if days < 30 else Status.OK
    return _item(
        title,
        status,
        f"{detail}; {config.thresholds.memory_pct.critical:g} % of maxmemory in {days:.0f} days",
        None if status is Status.OK else "redis-runbook keys stats (what grows?)",
    )


def packaged_redis_version(runner: Callable[..., Any] = run_command) -> str | None:
    """The redis-server version the local package manager would install (Debian's
    `apt-cache policy`: security updates included), None when unknown."""
    try:
        done = runner(["apt-cache", "policy", "redis-server"], timeout=20)
    except RunbookError:
        return None
    match = re.search(r"Candidate:\s*(?:\d+:)?(\d+\.\d+\.\d+)", done.stdout or "")
    return match.group(1) if match else None


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def redis_updates(snapshot: Snapshot) -> Line:
    """The running version against the locally packaged one (when there is one)."""
    title = "Update Redis if security patches are available"
    running = snapshot.info.get("redis_version")
    packaged = packaged_redis_version()
    if running is None:
        return _item(title, Status.UNKNOWN, "the running version is unknown (Redis not reached)")
    if packaged is None:
        return Manual(
            title,
            f"running {running}; no local package to compare with: check "
            "https://github.com/redis/redis/security/advisories and the release notes",
        )
    if _version(running) < _version(packaged):
        return _item(
            title,
            Status.WARNING,
            f"running {running}; the package offers {packaged}",
            "plan an upgrade in a maintenance window (redis-runbook recover restart)",
        )
    return _item(title, Status.OK, f"running {running}; the package offers {packaged}")


MANUAL: dict[Period, tuple[str, ...]] = {
    "daily": ("Read the alerts that fired since yesterday (redis-runbook journal, your inbox)",),
    "weekly": ("Look at the slow log entries above: is a new command or key pattern in it?",),
    "monthly": (
        "Read the Redis and BullMQ release notes for security fixes",
        "Check that the restore drill's archive is the one your RPO promises",
    ),
}


def run_checklist(period: Period, config: Config) -> Checklist:
    """Every automatable item of `period`, then its manual items."""
    snapshot = take_snapshot(config.target)
    result = Checklist(period, target_display(config.target))
    if period == "daily":
        result.items += _checks(
            snapshot,
            config,
            {
                "memory": "Check memory usage < 70%",
                "aof": "Verify AOF sync is working",
                "connected_clients": "Check connected clients count",
            },
        )
        if config.bullmq.expected_schedulers:
            result.items.append(expected_schedulers(config))
    elif period == "weekly":
        result.items.append(slowlog_patterns(config))
        result.items.append(backup_completion(config))
        result.items += _checks(snapshot, config, {"fragmentation": "Check memory fragmentation"})
    else:
        result.items.append(restore_drill(config))
        result.items.append(memory_trend(config))
        result.items.append(redis_updates(snapshot))
    result.items += [Manual(text) for text in MANUAL[period]]
    return result
