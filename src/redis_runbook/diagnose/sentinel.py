"""`diagnose` on a Sentinel-managed target: the topology decides scenario A.

The `[service]` section describes one host, which says little once Sentinel moves the
master around, so for a Sentinel target a down master is judged from what the
Sentinels and the data nodes say: is a failover under way, can one happen (quorum,
a promotable replica), or is there a split brain."""

from __future__ import annotations

from redis_runbook.checks.topology import fence_commands
from redis_runbook.config import Config
from redis_runbook.diagnose.scenario import Scenario
from redis_runbook.status import CheckResult, Status
from redis_runbook.target.topology import Topology


def _lines(checks: list[CheckResult]) -> tuple[str, ...]:
    return tuple(f"{c.name}: {c.summary}" for c in checks if c.status is not Status.OK)


def topology_scenarios(
    topology: Topology,
    checks: list[CheckResult],
    master_answers: bool,
    config: Config | None = None,
) -> list[Scenario]:
    """Scenario A for a master that does not answer or for two masters; [] otherwise
    (topology warnings become notes, see `topology_notes`)."""
    by_name = {c.name: c for c in checks}
    evidence = _lines(checks)
    found: list[Scenario] = []
    if by_name["split_brain"].status is Status.CRITICAL:
        found.append(
            Scenario(
                "A",
                "split-brain",
                "more than one node accepts writes as master: " + by_name["split_brain"].summary,
                evidence,
                (
                    fence_commands(topology, config)
                    if config
                    else "redis-cli -h OLD_MASTER REPLICAOF NEW_HOST NEW_PORT"
                )
                + " (fence every master but the one Sentinel names), then redis-runbook health",
            )
        )
    if master_answers:
        return found
    quorum = by_name["sentinel_quorum"].status is Status.OK
    promotable = by_name["replicas"].status is not Status.CRITICAL
    where = topology.master_address or "?"
    if topology.failover_in_progress:
        summary = f"the master {where} of {topology.service} is down; Sentinel is failing over"
        command = "wait for the failover to finish: redis-runbook health (shows the new master)"
    elif quorum and promotable:
        summary = (
            f"the master {where} of {topology.service} does not answer; Sentinel will promote "
            "a replica once it is objectively down (down-after-milliseconds)"
        )
        command = "wait, then redis-runbook health; redis-runbook failover if it does not happen"
    else:
        reason = "no quorum" if not quorum else "no promotable replica"
        summary = (
            f"the master {where} of {topology.service} does not answer and Sentinel cannot "
            f"fail over ({reason})"
        )
        command = (
            "redis-runbook failover --to HOST:PORT (promotes the most up-to-date replica "
            "without Sentinel), or bring the Sentinels/replicas back"
        )
    found.append(Scenario("A", "sentinel-master-down", summary, evidence, command))
    return found


def topology_notes(checks: list[CheckResult]) -> list[str]:
    """Topology checks that are not OK, as notes."""
    return [f"topology: {line}" for line in _lines(checks)]


def replica_scenarios(checks: list[CheckResult]) -> list[Scenario]:
    """Without Sentinel (`[target] replicas` listed, replicas.py): scenario A
    `split-brain` when more than one node says master; [] otherwise."""
    found = next((c for c in checks if c.name == "split_brain"), None)
    if found is None or found.status is not Status.CRITICAL:
        return []
    return [
        Scenario(
            "A",
            "split-brain",
            "more than one node accepts writes as master: " + found.summary,
            (f"split_brain: {found.summary}",),
            "redis-runbook health (split_brain), after fencing every master but one",
            found.hint,
        )
    ]
