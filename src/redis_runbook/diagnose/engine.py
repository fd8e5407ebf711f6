"""`diagnose`: the seed's §2.3 decision tree, walked automatically.

    diagnosis = diagnose(config)        # read-only; never raises for a sick server
    diagnosis.scenarios                 # [] when healthy; else A/B/C/D with evidence
    diagnosis.exit_code                 # 0 none, 1 only C, 2 any A/B/D, 3 cannot tell

The evidence (diagnose_evidence) is gathered under deadlines so a down or frozen
server is diagnosed within the connect timeout plus a few seconds; the rules
(diagnose_rules for A and D, diagnose_live for B and C) turn it into scenarios,
each with the lines it rests on and the exact command to run next.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from redis_runbook.checks.replicas import check_replicas
from redis_runbook.checks.topology import check_topology
from redis_runbook.config import Config
from redis_runbook.diagnose.down import corrupt_scenarios, down_scenario, unknown_reason
from redis_runbook.diagnose.evidence import Evidence, collect
from redis_runbook.diagnose.running import (
    degraded_scenarios,
    oom_scenarios,
    unresponsive,
    writes_refused,
)
from redis_runbook.diagnose.scenario import SEED_SECTIONS, Scenario
from redis_runbook.service import RunState
from redis_runbook.service.base import Service
from redis_runbook.status import Status, worst

__all__ = ["Diagnosis", "Scenario", "decide", "diagnose"]

ORDER = {"A": 0, "D": 1, "B": 2, "C": 3}


@dataclass
class Diagnosis:
    """The scenarios found (most urgent first) and the evidence behind them."""

    evidence: Evidence
    scenarios: list[Scenario]
    notes: list[str] = field(default_factory=list)
    unknown: str | None = None
    elapsed_ms: float = 0.0

    @property
    def status(self) -> Status:
        """OK (healthy), WARNING (only C), CRITICAL (any A/B/D), UNKNOWN (cannot tell)."""
        if self.unknown and not self.scenarios:
            return Status.UNKNOWN
        return worst(s.status for s in self.scenarios)

    @property
    def exit_code(self) -> int:
        """Nagios-style: 0, 1, 2 or 3 (see `status`)."""
        return int(self.status)

    def codes(self) -> list[str]:
        """The scenario letters found, in report order."""
        return [s.code for s in self.scenarios]

    def to_json(self) -> dict[str, Any]:
        """The stable `--json` document (docs/json.md)."""
        ev = self.evidence
        snap = ev.snapshot
        return {
            "target": snap.target,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(snap.taken_at)),
            "status": self.status.name,
            "exit_code": self.exit_code,
            "elapsed_ms": round(self.elapsed_ms, 2),
            "reachable": snap.reachable,
            "error": snap.error.message if snap.error else None,
            "service": {
                "kind": ev.config.service.kind,
                "description": ev.service.describe() if ev.service else None,
                "state": ev.state.state.value,
                "pid": ev.state.pid,
                "detail": ev.state.detail,
            },
            "scenarios": [scenario_json(s) for s in self.scenarios],
            "notes": self.notes,
            "evidence": evidence_json(ev),
        }


def scenario_json(scenario: Scenario) -> dict[str, Any]:
    """One scenario as JSON."""
    return {
        "code": scenario.code,
        "name": scenario.name,
        "cause": scenario.cause,
        "seed_section": SEED_SECTIONS[scenario.code],
        "summary": scenario.summary,
        "evidence": list(scenario.evidence),
        "files": list(scenario.files),
        "next_command": scenario.next_command,
        "advice": scenario.advice,
    }


def evidence_json(ev: Evidence) -> dict[str, Any]:
    """The evidence as JSON: checks that are not OK, log matches, kernel, disk, files."""
    disk = ev.disk
    off = ev.offline
    offline: dict[str, Any] | None = None
    if off is not None:
        offline = {
            "aof_layout": off.aof.kind if off.aof else None,
            "aof_files": [
                {"name": f.info.name, "type": f.info.kind, "exists": f.exists, "size": f.size}
                for f in (off.aof.files if off.aof else ())
            ],
            "aof_check": off.aof_check.summary if off.aof_check else off.aof_error,
            "aof_valid": off.aof_check.valid if off.aof_check else None,
            "rdb_header": off.rdb_header.summary if off.rdb_header else None,
            "rdb_check": off.rdb_check.summary if off.rdb_check else off.rdb_error,
            "rdb_valid": off.rdb_check.ok if off.rdb_check else None,
            "redis_server_version": off.server_version,
        }
    return {
        "ping_ms": ev.snapshot.ping_ms,
        "checks": [
            {"name": c.name, "status": c.status.name, "summary": c.summary}
            for c in ev.checks
            if c.status is not Status.OK
        ],
        "log": [{"key": m.key, "source": m.source, "line": m.text} for m in ev.logs.matches],
        "log_error": ev.logs.error,
        "kernel": {
            "readable": ev.kernel.readable,
            "source": ev.kernel.source,
            "oom_kills": [k.line for k in ev.kernel.kills],
            "note": ev.kernel.note,
        },
        "disk": {
            "path": str(disk.path),
            "exists": disk.exists,
            "writable": disk.writable,
            "free_bytes": disk.free_bytes,
            "total_bytes": disk.total_bytes,
            "free_inodes": disk.free_inodes,
            "total_inodes": disk.total_inodes,
        },
        "data_layout": {
            "data_dir": str(ev.layout.data_dir),
            "appendonly": ev.layout.appendonly,
            "aof_dir": str(ev.layout.aof_dir),
            "rdb": str(ev.layout.rdb_path),
            "source": ev.layout.source,
        },
        "cpu": {"pid": ev.cpu.pid, "state": ev.cpu.state, "percent": ev.cpu.percent}
        if ev.cpu
        else None,
        "stall": {"kind": ev.stall.kind, "evidence": ev.stall.evidence} if ev.stall else None,
        "offline": offline,
    }


def _notes(ev: Evidence) -> list[str]:
    notes = list(ev.notes)
    if not ev.kernel.readable and ev.kernel.note:
        notes.append(ev.kernel.note)
    if ev.logs.error:
        notes.append(f"server log not read: {ev.logs.error}")
    for match in ev.logs.find("aof-truncated-repaired", "slow-disk", "aof-rewrite-error"):
        notes.append(f"log: {match.meaning}: {match.message}")
    oom = next((c for c in ev.checks if c.name == "oom_rejections"), None)
    if oom is not None and oom.status is Status.OK and oom.metric and not ev.oom_growth:
        notes.append(
            f"{oom.metric:.0f} write(s) were refused with OOM since the start; none are now "
            f"({oom.summary.partition(': ')[2]})"
        )
    role = next((c for c in ev.checks if c.name == "role"), None)
    if role is not None and role.status is Status.CRITICAL:
        notes.append(f"replication: {role.summary}")
    if ev.snapshot.reachable and ev.state.state is RunState.STOPPED:
        notes.append(
            f"the server answers but the service says it is stopped ({ev.state.detail}): "
            "check [service] in the config"
        )
    off = ev.offline
    if off is not None:
        for what, error in (("AOF", off.aof_error), ("RDB", off.rdb_error)):
            if error:
                notes.append(f"offline {what} check not done: {error}")
    return notes


def decide(ev: Evidence) -> Diagnosis:
    """Walk the decision tree over collected evidence."""
    scenarios: list[Scenario] = []
    unknown = unknown_reason(ev)
    corrupt = corrupt_scenarios(ev)
    if ev.snapshot.reachable:
        refused = writes_refused(ev)
        scenarios += [refused] if refused else []
        scenarios += oom_scenarios(ev) + degraded_scenarios(ev)
    elif unknown is None:
        if ev.state.state is RunState.RUNNING:
            stalled = unresponsive(ev)
            scenarios.append(stalled if stalled else down_scenario(ev, corrupt))
        else:
            scenarios.append(down_scenario(ev, corrupt))
    scenarios += corrupt
    scenarios.sort(key=lambda s: ORDER[s.code])
    notes = _notes(ev)
    if unknown:
        notes.insert(0, f"cannot diagnose the server itself: {unknown}")
    return Diagnosis(ev, scenarios, notes, unknown)


def _with_topology(diagnosis: Diagnosis, config: Config, env: Mapping[str, str] | None) -> None:
    """For a Sentinel target, scenario A comes from the topology (the [service] host
    may no longer hold the master)."""
    from redis_runbook.diagnose.sentinel import topology_notes, topology_scenarios

    topology, checks = check_topology(config, env)
    answers = diagnosis.evidence.snapshot.reachable
    found = topology_scenarios(topology, checks, answers, config)
    kept = [s for s in diagnosis.scenarios if s.code != "A"]
    diagnosis.scenarios = sorted(found + kept, key=lambda s: ORDER[s.code])
    diagnosis.notes += topology_notes(checks) if not found else []


def diagnose(
    config: Config,
    env: Mapping[str, str] | None = None,
    *,
    service: Service | None = None,
    tool_timeout: float = 10.0,
) -> Diagnosis:
    """Collect evidence about the configured target (read-only) and diagnose it.
    `tool_timeout` bounds each offline redis-check-aof/rdb run (0 skips them)."""
    started = time.perf_counter()
    evidence = collect(config, env, service=service, tool_timeout=tool_timeout)
    diagnosis = decide(evidence)
    if config.target.sentinel is not None:
        _with_topology(diagnosis, config, env)
    elif config.target.replicas:  # without Sentinel: two masters are a split brain
        from redis_runbook.diagnose.sentinel import replica_scenarios

        found = replica_scenarios(check_replicas(config, env))
        diagnosis.scenarios = sorted(found + diagnosis.scenarios, key=lambda s: ORDER[s.code])
    diagnosis.elapsed_ms = (time.perf_counter() - started) * 1000
    return diagnosis
