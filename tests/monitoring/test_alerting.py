"""The alert state machine on its own: hysteresis, escalation, repeats, `for` cycles,
and keys that were not observed. Pure functions, so every sequence is exact."""

from __future__ import annotations

from redis_runbook.config.monitoring import AlertsConfig
from redis_runbook.monitoring.alerting import AlertState, step
from redis_runbook.status import CheckResult, Status

OK, WARN, CRIT, UNKNOWN = Status.OK, Status.WARNING, Status.CRITICAL, Status.UNKNOWN
TARGET = "redis://127.0.0.1:7000/0"


def run(
    sequence: list[Status], policy: AlertsConfig, key: str = "redis:memory", gap: float = 60.0
) -> list[str]:
    """Feed one status per cycle; return `cycle:KIND` for every notification."""
    states: dict[str, AlertState] = {}
    sent = []
    for cycle, status in enumerate(sequence):
        obs = [CheckResult(key, status, summary=f"cycle {cycle}")]
        for n in step(states, obs, 1000.0 + cycle * gap, policy, TARGET):
            sent.append(f"{cycle}:{n.kind}")
    return sent


def test_a_value_hovering_around_its_threshold_fires_once_and_never_flaps() -> None:
    policy = AlertsConfig(resolve_after_cycles=2)
    assert run([WARN, OK, WARN, OK, WARN, OK, WARN], policy) == ["0:FIRING"]
    assert run([WARN, OK, WARN, OK, OK, OK], policy) == ["0:FIRING", "4:RESOLVED"]


def test_escalation_is_sent_at_once_but_dropping_back_and_rising_again_is_not() -> None:
    policy = AlertsConfig(repeat_interval_seconds=3600)
    assert run([WARN, CRIT, WARN, CRIT, CRIT], policy) == ["0:FIRING", "1:ESCALATED"]


def test_repeats_come_at_the_repeat_interval_with_the_current_severity() -> None:
    policy = AlertsConfig(repeat_interval_seconds=600)
    sent = run([CRIT] * 12, policy, gap=120.0)  # 120 s cycles, 600 s repeat
    assert sent == ["0:FIRING", "5:REPEAT", "10:REPEAT"]


def test_for_cycles_delays_firing_and_a_short_blip_is_forgotten() -> None:
    policy = AlertsConfig(for_cycles={"queue_stale_jobs": 3})
    key = "queue:bull:emails:queue_stale_jobs"
    assert run([WARN, WARN, OK, WARN, WARN, WARN], policy, key=key) == ["5:FIRING"]
    assert run([WARN, WARN, OK, OK], policy, key=key) == []  # never fired: nothing resolves


def test_unknown_is_notified_unless_switched_off() -> None:
    assert run([UNKNOWN], AlertsConfig()) == ["0:FIRING"]
    assert run([UNKNOWN], AlertsConfig(notify_unknown=False)) == []


def test_an_unobserved_key_keeps_its_state_unless_its_scope_was_evaluated() -> None:
    policy = AlertsConfig(resolve_after_cycles=1)
    states: dict[str, AlertState] = {}
    memory = CheckResult("redis:memory", CRIT, summary="91 %")
    down = CheckResult("redis:connection", CRIT, summary="down")
    assert [n.kind for n in step(states, [memory], 1.0, policy, TARGET)] == ["FIRING"]
    # Redis is down: memory is not observed and must not resolve.
    assert [n.key for n in step(states, [down], 2.0, policy, TARGET)] == ["redis:connection"]
    assert states["redis:memory"].firing
    # Back up, everything evaluated: both resolve (memory was not observed at all).
    back = [CheckResult("redis:connection", OK)]
    resolved = step(states, back, 3.0, policy, TARGET, evaluated_scopes=("redis:",))
    assert sorted((n.key, n.kind) for n in resolved) == [
        ("redis:connection", "RESOLVED"),
        ("redis:memory", "RESOLVED"),
    ]
    assert states == {}


def test_resolved_can_be_switched_off() -> None:
    policy = AlertsConfig(send_resolved=False, resolve_after_cycles=1)
    assert run([CRIT, OK], policy) == ["0:FIRING"]


def test_state_survives_a_json_round_trip() -> None:
    states: dict[str, AlertState] = {}
    step(
        states,
        [CheckResult("redis:aof", CRIT, "err", "ok", "AOF write failed")],
        5.0,
        AlertsConfig(),
        TARGET,
    )
    again = {k: AlertState.from_json(s.to_json()) for k, s in states.items()}
    assert again == states
