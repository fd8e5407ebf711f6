"""The one check-result type: a named verdict with a Nagios status.

Health checks, monitor observations (named by their alert key, `redis:memory`,
`queue:bull:emails:queue_stale_jobs`), checklist items and restore-drill checks are
all `CheckResult`s; the status's int value is the exit code of every command that
reports them (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum


class Status(IntEnum):
    """Nagios states; the int value is the exit code."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3

    @property
    def severity(self) -> int:
        """Ordering for "worst": OK < WARNING < UNKNOWN < CRITICAL. An UNKNOWN may
        hide a problem, so it outranks WARNING; a CRITICAL we saw outranks both."""
        return {Status.OK: 0, Status.WARNING: 1, Status.UNKNOWN: 2, Status.CRITICAL: 3}[self]


def worst(statuses: Iterable[Status]) -> Status:
    """The most severe status (OK for none)."""
    return max(statuses, key=lambda s: s.severity, default=Status.OK)


@dataclass(frozen=True)
class CheckResult:
    """One named check: status, the value seen, the threshold applied, a one-line
    summary, and (when not OK) a hint naming what to run next. `name` is the key
    the result is reported, alerted and exported under."""

    name: str
    status: Status
    value: str = ""
    threshold: str = ""
    summary: str = ""
    hint: str | None = None
    metric: float | None = None
