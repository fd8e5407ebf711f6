"""The last step of a Sentinel switchover: wait (polling, bounded) until the replicas
replicate from the new master and every Sentinel says so, so that `health` right
after a successful `failover` is OK instead of CRITICAL for a few seconds.

A replica counts as linked when it says so itself (`ROLE` slave of the new master,
`master_link_status:up`) and the new master lists it `state=online`. The Sentinels
must also have caught up (they name the new master, no failover in progress, the
replica's `master-link-status` ok): `health` reads the topology from them.

At the deadline: replicas not linked yet are named in the step's message (a
warning, the switch itself succeeded); the step fails only when no replica at all is
linked, since the new master then has no replica to fail over to."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from redis_runbook.config import Config
from redis_runbook.procedures.engine import StepFailed
from redis_runbook.replies import parse_pairs
from redis_runbook.target.sentinel import view_of
from redis_runbook.target.topology import NodeView, node_view

LINK_TIMEOUT_S = 30.0
POLL_S = 0.1


@dataclass
class LinkState:
    """One round of observations."""

    linked: dict[str, str]  # address -> what the new master says of it
    pending: dict[str, str]  # address -> why it is not linked yet
    sentinels: list[str]  # Sentinels that have not caught up, and why

    @property
    def settled(self) -> bool:
        """Every replica linked and every Sentinel agrees."""
        return not self.pending and not self.sentinels


def _online(master: NodeView) -> dict[str, str]:
    """address -> `online, lag N s` for the replicas the master lists online."""
    found = {}
    for key, value in master.info.items():
        if key.startswith("slave") and key[5:].isdigit():
            p = parse_pairs(value)
            if p.get("state") == "online":
                found[f"{p.get('ip')}:{p.get('port')}"] = f"lag {p.get('lag', '?')} s"
    return found


def _why_not(view: NodeView, new: str, online: dict[str, str]) -> str | None:
    """Why the replica is not linked to `new` (None: it is)."""
    if view.error is not None or not view.info:
        return f"does not answer ({view.error})"
    if view.role != "slave":
        return f"says it is {view.role}"
    info = view.info
    source = f"{info.get('master_host')}:{info.get('master_port')}"
    if source != new:
        return f"replicates from {source}"
    if info.get("master_link_status") != "up":
        syncing = info.get("master_sync_in_progress") == "1"
        return "link down" + (" (full sync in progress)" if syncing else "")
    if view.address not in online:
        return f"not yet online on {new}"
    return None


def _sentinel_lag(
    config: Config, new: str, replicas: list[str], env: Mapping[str, str] | None
) -> list[str]:
    """The Sentinels that answer but have not caught up with the switch, and why."""
    sentinel = config.target.sentinel
    assert sentinel is not None
    behind = []
    for address in sentinel.addresses:
        view = view_of(sentinel, address, config.target.connect_timeout, env)
        if view.master is None:
            continue  # does not answer: the `sentinels` check reports it
        named = f"{view.master.get('ip')}:{view.master.get('port')}"
        if named != new:
            behind.append(f"{address} still names {named}")
            continue
        if "failover" in view.master.get("flags", ""):
            behind.append(f"{address} still has a failover in progress")
            continue
        seen = {f"{r.get('ip')}:{r.get('port')}": r for r in view.replicas}
        for replica in replicas:
            r = seen.get(replica)
            flags = (r or {}).get("flags", "")
            if (
                r is None
                or r.get("master-link-status") != "ok"
                or "down" in flags
                or ("disconnected" in flags)
            ):
                behind.append(f"{address} does not see {replica} linked yet")
                break
    return behind


def observe(
    config: Config, new: str, replicas: list[str], env: Mapping[str, str] | None = None
) -> LinkState:
    """One round: the new master, each replica, each Sentinel. Never raises."""
    online = _online(node_view(config, new, env))
    linked, pending = {}, {}
    for address in replicas:
        why = _why_not(node_view(config, address, env), new, online)
        if why is None:
            linked[address] = online[address]
        else:
            pending[address] = why
    behind = _sentinel_lag(config, new, list(linked), env) if linked else []
    return LinkState(linked, pending, behind)


def wait_linked(
    config: Config,
    new: str,
    replicas: list[str],
    env: Mapping[str, str] | None = None,
    timeout_s: float = LINK_TIMEOUT_S,
) -> str:
    """Poll until every replica in `replicas` is linked to `new` and the Sentinels
    agree; the operator's sentence. StepFailed when none is linked by the deadline."""
    if not replicas:
        return f"WARNING {new} has no replica to wait for (none answered and replicated before)"
    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        state = observe(config, new, replicas, env)
        if state.settled or time.monotonic() > deadline:
            break
        time.sleep(POLL_S)
    took = time.monotonic() - started
    pending = ", ".join(f"{a} ({why})" for a, why in state.pending.items())
    if not state.linked:
        raise StepFailed(
            f"no replica linked to {new} within {timeout_s:g} s: {pending}",
            "redis-runbook health (the replicas check); a replica in a full sync links "
            "when the sync ends",
        )
    linked = ", ".join(f"{a} ({state_})" for a, state_ in state.linked.items())
    text = f"{len(state.linked)} of {len(replicas)} replicas linked to {new} after {took:.2f} s"
    text += f": {linked}" if linked else ""
    if pending:
        text += f"; WARNING not linked after {timeout_s:g} s: {pending}"
    if state.sentinels:
        text += f"; WARNING Sentinels not caught up: {'; '.join(state.sentinels)}"
    return text
