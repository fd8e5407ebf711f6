"""Topology health of a Sentinel-managed deployment (part of `health` and `diagnose`
when `[target.sentinel]` is set): what every Sentinel says, and what every data node
says about itself, turned into named checks.

    sentinels          how many Sentinels answer, of those configured
    sentinel_quorum    SENTINEL CKQUORUM: can they agree and authorise a failover?
    sentinel_tilt      a Sentinel in TILT mode acts on nothing for 30 s
    master             the master as Sentinel sees it: down (s_down/o_down), or a
                       failover in progress
    replicas           replicas whose link to the master is up, and promotable ones
                       (replica-priority > 0)
    replica_lag        the worst replica's lag, in seconds and in bytes of offset
    split_brain        more than one data node answering ROLE with `master`
"""

from __future__ import annotations

from collections.abc import Mapping

from redis_runbook.checks.base import band_status, band_text
from redis_runbook.config import Config
from redis_runbook.replies import parse_pairs
from redis_runbook.status import CheckResult, Status
from redis_runbook.target import redis_cli_prefix
from redis_runbook.target.sentinel import split_address
from redis_runbook.target.topology import Topology, gather

TOPOLOGY_CHECKS = (
    "sentinels",
    "sentinel_quorum",
    "sentinel_tilt",
    "master",
    "replicas",
    "replica_lag",
    "split_brain",
)


def _result(
    name: str, status: Status, value: str, threshold: str, summary: str, hint: str | None
) -> CheckResult:
    return CheckResult(name, status, value, threshold, summary, hint if status else None)


def _sentinels(t: Topology, configured: int) -> CheckResult:
    up = len(t.answering)
    quorum = int((t.master or {}).get("quorum", 0) or 0)
    status = Status.OK if up == configured else Status.WARNING
    if up < max(quorum, 1):
        status = Status.CRITICAL
    down = [f"{v.address} ({v.error})" for v in t.views if v.master is None]
    return _result(
        "sentinels",
        status,
        f"{up}/{configured}",
        f"all {configured} answer (quorum {quorum})",
        f"{up} of {configured} Sentinels answer" + (f"; not: {', '.join(down)}" if down else ""),
        "start the missing redis-sentinel processes (each needs a writable sentinel.conf)",
    )


def _quorum(t: Topology) -> CheckResult:
    ok = any(v.ckquorum_ok for v in t.answering)
    said = next((v.ckquorum for v in t.answering if v.ckquorum), "no Sentinel answered")
    return _result(
        "sentinel_quorum",
        Status.OK if ok else Status.CRITICAL,
        "ok" if ok else "NOQUORUM",
        "CKQUORUM ok",
        said or "",
        "bring Sentinels back until a majority answers; no failover can happen meanwhile",
    )


def _tilt(t: Topology) -> CheckResult:
    tilted = [v.address for v in t.views if v.tilt]
    return _result(
        "sentinel_tilt",
        Status.WARNING if tilted else Status.OK,
        str(len(tilted)),
        "none in TILT",
        f"in TILT (acting on nothing for 30 s): {', '.join(tilted)}" if tilted else "no TILT",
        "TILT follows a clock jump or a stalled process: check the host's load and clock",
    )


def _master(t: Topology) -> CheckResult:
    m = t.master
    if m is None:
        return _result(
            "master",
            Status.CRITICAL,
            "unknown",
            "known to Sentinel",
            f"no Sentinel answered about {t.service}",
            "redis-runbook diagnose",
        )
    flags = m.get("flags", "")
    where = t.master_address
    if "s_down" in flags or "o_down" in flags:
        state = "objectively down" if "o_down" in flags else "subjectively down"
        return _result(
            "master",
            Status.CRITICAL,
            flags,
            "flags: master",
            f"master {where} is {state}"
            + ("; failover in progress" if t.failover_in_progress else ""),
            "redis-runbook diagnose; Sentinel promotes a replica after quorum",
        )
    if t.failover_in_progress:
        return _result(
            "master",
            Status.WARNING,
            flags,
            "flags: master",
            f"failover of {t.service} in progress (master {where})",
            "wait for it: redis-runbook health",
        )
    return _result("master", Status.OK, flags, "flags: master", f"master {where}", None)


def _replicas(t: Topology, config: Config) -> CheckResult:
    known = t.replicas
    linked = [
        r
        for r in known
        if r.get("master-link-status") == "ok"
        and "s_down" not in r.get("flags", "")
        and "disconnected" not in r.get("flags", "")
    ]
    promotable = [r for r in linked if r.get("slave-priority", "100") != "0"]
    status = Status.OK
    if not promotable:
        status = Status.CRITICAL
    elif len(linked) < len(known):
        status = Status.WARNING
    broken = [
        f"{r.get('ip')}:{r.get('port')} ({r.get('master-link-status')}, {r.get('flags')})"
        for r in known
        if r not in linked
    ]
    # Ask a replica that does not replicate; else the master (it lists its replicas).
    ask = next((r for r in known if r not in linked), None)
    node = f"{ask.get('ip')}:{ask.get('port')}" if ask else t.master_address
    cli = redis_cli_prefix(config.target, split_address(node)) if node else "redis-cli"
    return _result(
        "replicas",
        status,
        f"{len(linked)}/{len(known)}",
        "every replica linked, one promotable",
        f"{len(linked)} of {len(known)} replicas replicating, {len(promotable)} promotable"
        + (f"; not replicating: {', '.join(broken)}" if broken else ""),
        f"{cli} INFO replication (master_link_status); a priority-0 replica is never promoted",
    )


def _lag(t: Topology, config: Config) -> CheckResult:
    master = next((n for n in t.nodes if n.address == t.master_address and n.info), None)
    if master is None:
        return _result(
            "replica_lag",
            Status.UNKNOWN,
            "n/a",
            "-",
            "the master's INFO is not available",
            "redis-runbook diagnose",
        )
    offset = int(master.info.get("master_repl_offset", 0))
    worst_s, worst_b, who = 0.0, 0, ""
    for key, value in master.info.items():
        if key.startswith("slave") and key[5:].isdigit():
            p = parse_pairs(value)
            lag_s, lag_b = float(p.get("lag", 0)), max(0, offset - int(p.get("offset", 0)))
            if (lag_s, lag_b) > (worst_s, worst_b):
                worst_s, worst_b, who = lag_s, lag_b, f"{p.get('ip')}:{p.get('port')}"
    th = config.thresholds
    status = max(
        band_status(worst_s, th.replica_lag_seconds),
        band_status(worst_b, th.replica_lag_bytes),
        key=lambda s: s.severity,
    )
    return _result(
        "replica_lag",
        status,
        f"{worst_s:g} s, {worst_b} B",
        f"{band_text(th.replica_lag_seconds, ' s')}; {band_text(th.replica_lag_bytes, ' B')}",
        f"worst replica {who or '-'}: {worst_s:g} s since its last ack, {worst_b} bytes behind",
        "a lagging replica loses those writes if promoted: check its network and disk",
    )


def fence_commands(t: Topology, config: Config) -> str:
    """The REPLICAOF that fences each master Sentinel does not name, aimed at it."""
    if t.master_address is None:
        return "redis-cli -h OLD_MASTER REPLICAOF NEW_HOST NEW_PORT"
    host, port = split_address(t.master_address)
    others = [n.address for n in t.nodes if n.role == "master" and n.address != t.master_address]
    return (
        "; ".join(
            f"{redis_cli_prefix(config.target, split_address(old))} REPLICAOF {host} {port}"
            for old in others
        )
        or f"redis-cli -h OLD_MASTER REPLICAOF {host} {port}"
    )


def _split_brain(t: Topology, config: Config) -> CheckResult:
    masters = [n.address for n in t.nodes if n.role == "master"]
    status = Status.CRITICAL if len(masters) > 1 else Status.OK
    return _result(
        "split_brain",
        status,
        str(len(masters)),
        "exactly one node says master",
        f"nodes answering ROLE master: {', '.join(masters) or 'none'}",
        f"fence every master but Sentinel's: {fence_commands(t, config)}",
    )


def topology_checks(t: Topology, config: Config) -> list[CheckResult]:
    """The topology checks, in TOPOLOGY_CHECKS order."""
    sentinel = config.target.sentinel
    assert sentinel is not None
    return [
        _sentinels(t, len(sentinel.addresses)),
        _quorum(t),
        _tilt(t),
        _master(t),
        _replicas(t, config),
        _lag(t, config),
        _split_brain(t, config),
    ]


def check_topology(
    config: Config, env: Mapping[str, str] | None = None
) -> tuple[Topology, list[CheckResult]]:
    """Gather the topology and run its checks (health, diagnose, the exporter)."""
    topology = gather(config, env)
    return topology, topology_checks(topology, config)
