"""Alert state between monitor cycles: when an alert fires, repeats, escalates and
resolves. Pure functions over plain data, so the same rules hold for the daemon and
for `monitor --once` under cron (whose state lives in a file between runs).

- An observation that is not OK for `for_cycles` consecutive cycles FIRES once.
- While it stays, nothing is sent until `repeat_interval_seconds` have passed since
  the last notification (then a REPEAT with the current severity), except that a
  severity above every one already notified in this episode is sent at once
  (ESCALATED). Dropping back to a lower severity sends nothing.
- It RESOLVES only after `resolve_after_cycles` consecutive OK cycles (hysteresis:
  a value hovering around its threshold fires once, not on every crossing).
- A key that was not observed this cycle (e.g. memory while Redis is down) keeps
  its state, unless the caller says its scope was fully evaluated: then it counts
  as OK (a queue that was deleted resolves)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from redis_runbook.config.monitoring import AlertsConfig
from redis_runbook.status import CheckResult, Status

Kind = Literal["FIRING", "ESCALATED", "REPEAT", "RESOLVED"]


@dataclass
class AlertState:
    """What the monitor remembers about one key between cycles."""

    key: str
    status: str
    bad_cycles: int = 0
    ok_cycles: int = 0
    firing: bool = False
    since: float | None = None
    notified_severity: int = 0
    last_notified: float | None = None
    last: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AlertState:
        """The state as saved by `to_json`."""
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        return asdict(self)


@dataclass(frozen=True)
class Notification:
    """A message to send: what changed, for which key, and what was seen."""

    kind: Kind
    key: str
    status: str
    value: str
    threshold: str
    summary: str
    hint: str | None
    since: float | None
    at: float
    target: str

    def to_json(self) -> dict[str, Any]:
        """The webhook payload's fields (docs/monitoring.md)."""
        return asdict(self)

    @property
    def headline(self) -> str:
        """`CRITICAL redis:memory — memory at 91% of maxmemory`."""
        status = "RESOLVED" if self.kind == "RESOLVED" else self.status
        return f"{status} {self.key} on {self.target}: {self.summary}"


def _counts(status: Status, policy: AlertsConfig) -> bool:
    if status is Status.OK:
        return False
    return status is not Status.UNKNOWN or policy.notify_unknown


def _notify(
    state: AlertState, kind: Kind, obs: CheckResult | None, now: float, target: str
) -> Notification:
    last = state.last
    return Notification(
        kind=kind,
        key=state.key,
        status=obs.status.name if obs else "OK",
        value=obs.value if obs else last.get("value", ""),
        threshold=obs.threshold if obs else last.get("threshold", ""),
        summary=obs.summary if obs else f"back to OK (was {state.status}: {last.get('summary')})",
        hint=obs.hint if obs else None,
        since=state.since,
        at=now,
        target=target,
    )


def _bad(state: AlertState, obs: CheckResult, now: float, policy: AlertsConfig) -> Kind | None:
    state.bad_cycles += 1
    state.ok_cycles = 0
    state.status = obs.status.name
    state.last = {"value": obs.value, "threshold": obs.threshold, "summary": obs.summary}
    severity = obs.status.severity
    if not state.firing:
        check = obs.name.rsplit(":", 1)[-1]
        if state.bad_cycles < policy.for_cycles.get(check, policy.fire_after_cycles):
            return None
        state.firing = True
        return "FIRING"
    if severity > state.notified_severity:
        return "ESCALATED"
    assert state.last_notified is not None
    if now - state.last_notified >= policy.repeat_interval_seconds:
        return "REPEAT"
    return None


def step(
    states: dict[str, AlertState],
    observations: Iterable[CheckResult],
    now: float,
    policy: AlertsConfig,
    target: str,
    evaluated_scopes: tuple[str, ...] = (),
) -> list[Notification]:
    """Advance every alert by one cycle (mutates `states`) and return what to send.
    Keys starting with one of `evaluated_scopes` that were not observed count as OK."""
    notifications: list[Notification] = []
    seen: set[str] = set()
    for obs in observations:
        seen.add(obs.name)
        if _counts(obs.status, policy):
            state = states.setdefault(obs.name, AlertState(obs.name, obs.status.name, since=now))
            kind = _bad(state, obs, now, policy)
            if kind is not None:
                notifications.append(_notify(state, kind, obs, now, target))
                state.notified_severity = obs.status.severity
                state.last_notified = now
        elif obs.name in states:
            notifications.extend(_recovered(states, obs.name, now, policy, target))
    for key in [k for k in states if k not in seen and k.startswith(evaluated_scopes or ("\0",))]:
        notifications.extend(_recovered(states, key, now, policy, target))
    return notifications


def _recovered(
    states: dict[str, AlertState], key: str, now: float, policy: AlertsConfig, target: str
) -> list[Notification]:
    state = states[key]
    if not state.firing:  # pending, never notified: forget it
        del states[key]
        return []
    state.bad_cycles = 0
    state.ok_cycles += 1
    if state.ok_cycles < policy.resolve_after_cycles:
        return []
    del states[key]
    return [_notify(state, "RESOLVED", None, now, target)] if policy.send_resolved else []
