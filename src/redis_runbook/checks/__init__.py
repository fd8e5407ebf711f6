"""Named health checks over one Snapshot (seed §2.1 and the §6.1 thresholds)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from redis_runbook.checks import clients, memory, persistence, server
from redis_runbook.checks.base import CheckFn, Context
from redis_runbook.config import Config
from redis_runbook.errors import AuthFailed, SecretError
from redis_runbook.snapshot import Snapshot, take_snapshot
from redis_runbook.status import CheckResult, Status, worst

__all__ = ["CHECKS", "CHECK_NAMES", "HealthReport", "evaluate", "run_health"]

#: Every health check, in report order; each returns a result named after its function.
CHECKS: tuple[CheckFn, ...] = (
    server.ping_latency,
    server.loading,
    server.role,
    memory.memory,
    memory.maxmemory_policy,
    memory.evicted_keys,
    memory.oom_rejections,
    memory.fragmentation,
    clients.connected_clients,
    clients.blocked_clients,
    clients.rejected_connections,
    persistence.aof,
    persistence.rdb,
    persistence.aof_rewrite_time,
    persistence.rdb_age,
    server.latency_spikes,
    server.slowlog,
    server.keyspace,
)
CHECK_NAMES = tuple(check.__name__ for check in CHECKS)


@dataclass
class HealthReport:
    """All check results for one snapshot, and the overall status."""

    snapshot: Snapshot
    checks: list[CheckResult]
    elapsed_ms: float = 0.0
    server: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> Status:
        """The worst check status."""
        return worst(c.status for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        """The stable `--json` document (docs/json.md)."""
        return {
            "target": self.snapshot.target,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.snapshot.taken_at)),
            "status": self.status.name,
            "exit_code": int(self.status),
            "elapsed_ms": round(self.elapsed_ms, 2),
            "round_trips": self.snapshot.round_trips,
            "server": self.server,
            "checks": [
                {
                    "name": c.name,
                    "status": c.status.name,
                    "value": c.value,
                    "threshold": c.threshold,
                    "summary": c.summary,
                    "hint": c.hint,
                    "metric": c.metric,
                }
                for c in self.checks
            ],
        }


def _unreachable(snapshot: Snapshot) -> list[CheckResult]:
    error = snapshot.error
    assert error is not None
    # Credentials or secret sources that fail say nothing about the server itself.
    status = Status.UNKNOWN if isinstance(error, AuthFailed | SecretError) else Status.CRITICAL
    name = "connection" if status is Status.CRITICAL else "authentication"
    return [CheckResult(name, status, "failed", "answers PING", error.message, error.hint)]


def _busy(snapshot: Snapshot) -> list[CheckResult]:
    """A server that answers PING with BUSY serves no client: one CRITICAL result that
    says why and how to end it (the other checks would only say "denied")."""
    from redis_runbook.stall import kill_script_hint

    return [
        CheckResult(
            "connection",
            Status.CRITICAL,
            "BUSY",
            "answers PING",
            "Redis is busy: a script or a long command holds the event loop "
            f"({snapshot.ping_reply})",
            kill_script_hint(snapshot.redis_cli or "redis-cli"),
        )
    ]


def evaluate(snapshot: Snapshot, config: Config) -> list[CheckResult]:
    """Run every check on the snapshot, in report order."""
    if not snapshot.reachable:
        return _unreachable(snapshot)
    if (snapshot.ping_reply or "").startswith("BUSY"):
        return _busy(snapshot)
    ctx = Context(snapshot, config)
    return [check(ctx) for check in CHECKS]


def run_health(config: Config, env: Mapping[str, str] | None = None) -> HealthReport:
    """Take one snapshot of the configured target and evaluate all checks. The
    topology checks, and their modules, are for a target with Sentinel or replicas."""
    started = time.perf_counter()
    snapshot = take_snapshot(config.target, env)
    checks = evaluate(snapshot, config)
    if config.target.sentinel is not None:
        from redis_runbook.checks.topology import check_topology

        checks += check_topology(config, env)[1]
    elif config.target.replicas:  # without Sentinel: ROLE on every listed node
        from redis_runbook.checks.replicas import check_replicas

        checks += check_replicas(config, env)
    info = snapshot.info
    server: dict[str, str] = {
        k: info[k]
        for k in ("redis_version", "redis_mode", "role", "uptime_in_seconds", "os")
        if k in info
    }
    elapsed = (time.perf_counter() - started) * 1000
    return HealthReport(snapshot, checks, elapsed, server)
