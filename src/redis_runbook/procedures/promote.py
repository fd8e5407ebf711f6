"""`failover --to HOST:PORT` without Sentinel (redis-ops.md §3, "Manual promotion").

- The master answers: `FAILOVER TO host port TIMEOUT ms` on it. Redis pauses writes,
  waits until the target has acknowledged every one, then swaps roles: no
  acknowledged write is lost. The other replicas are then pointed at the new master.
- The master does not answer: it is fenced first (procedures/fencing.py: stopped
  through its `[service]`, a hung one killed, until its port refuses connections;
  or, with --old-master-gone, the operator's word, which does not hold while its
  port accepts connections). A fence that did not happen fails the step and nothing
  is promoted. Then the replica with the highest replication offset among the
  reachable ones (`[target] replicas` and `--to`; priority 0 excluded) is promoted
  with `REPLICAOF NO ONE` and the others follow it. Writes the old master
  acknowledged beyond that offset are lost, so this needs the typed confirmation
  plus --i-understand-data-loss in automation. `--to` naming a replica that is
  behind another is refused unless --force.

Either way the new roles are written to the servers' config files (CONFIG REWRITE;
the line to set is named where there is no config file), so that a restart does
not bring the old roles back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import redis

from redis_runbook.config import Config
from redis_runbook.errors import ConfigError, Refused, RunbookError
from redis_runbook.procedures.context import ProcedureContext
from redis_runbook.procedures.engine import Confirm, Plan, Step, StepFailed
from redis_runbook.procedures.failover import QueueWitness, Switchover
from redis_runbook.procedures.fencing import (
    Fence,
    describe_unanswering,
    persist_roles,
    stopped_master_line,
)
from redis_runbook.procedures.reconcile import with_reconcile
from redis_runbook.replies import parse_pairs
from redis_runbook.target.sentinel import split_address
from redis_runbook.target.topology import NodeView, node_command, node_view

FAILOVER_TIMEOUT_MS = 10_000
POLL_S = 0.05


@dataclass
class Candidate:
    """A replica that could be promoted, as it describes itself."""

    address: str
    offset: int
    priority: int
    link: str

    @classmethod
    def of(cls, view: NodeView) -> Candidate | None:
        """None unless the node answered as a replica."""
        info = view.info
        if view.role not in ("slave", "replica") or not info:
            return None
        return cls(
            view.address,
            int(info.get("slave_repl_offset", 0)),
            int(info.get("slave_priority", info.get("replica_priority", 100))),
            info.get("master_link_status", "?"),
        )


def _address(config: Config) -> str:
    """HOST:PORT of the master the [target] url names. A unix socket names no address
    the replicas could follow: refused rather than guessed (a guess of 6379 could act
    on a server nobody meant)."""
    parts = urlsplit(config.target.url)
    if parts.scheme == "unix" or not parts.hostname:
        raise ConfigError(
            f"failover without Sentinel needs a TCP [target] url (HOST:PORT the replicas "
            f"follow), got {parts.scheme}://",
            'set [target] url = "redis://HOST:PORT/0" (or [target.sentinel]): '
            "redis-runbook config show",
        )
    return f"{parts.hostname}:{parts.port or 6379}"


def _replicas_of_master(view: NodeView) -> list[str]:
    return [
        f"{p.get('ip')}:{p.get('port')}"
        for key, value in view.info.items()
        if key.startswith("slave") and key[5:].isdigit()
        for p in [parse_pairs(value)]
    ]


@dataclass
class Promotion:
    """What the steps share."""

    config: Config
    old: str
    new: str
    others: list[str] = field(default_factory=list)

    def failover_to(self) -> str:
        """FAILOVER TO on the live master; wait for the roles to swap."""
        host, port = split_address(self.new)
        started = time.monotonic()
        try:
            node_command(
                self.config, self.old, "FAILOVER", "TO", host, port, "TIMEOUT", FAILOVER_TIMEOUT_MS
            )
        except redis.ResponseError as exc:
            raise StepFailed(f"{self.old} refused FAILOVER: {exc}") from None
        deadline = started + FAILOVER_TIMEOUT_MS / 1000 + 5
        while True:
            new_role = node_view(self.config, self.new, None).role
            state = node_view(self.config, self.old, None).info.get("master_failover_state", "?")
            if new_role == "master" and state == "no-failover":
                return f"{self.new} is master after {time.monotonic() - started:.2f} s"
            if time.monotonic() > deadline:
                raise StepFailed(f"roles did not swap (target {new_role}, old {state})")
            time.sleep(POLL_S)

    def replicaof_no_one(self) -> str:
        """Promote the chosen replica."""
        node_command(self.config, self.new, "REPLICAOF", "NO", "ONE")
        if node_view(self.config, self.new, None).role != "master":
            raise StepFailed(f"{self.new} did not become master")
        return f"{self.new} is master (REPLICAOF NO ONE)"

    def repoint(self) -> str:
        """Every other replica follows the new master."""
        host, port = split_address(self.new)
        done, unreachable = [], []
        for address in self.others:
            try:
                node_command(self.config, address, "REPLICAOF", host, port)
                done.append(address)
            except (redis.RedisError, RunbookError):
                unreachable.append(address)
        text = f"now replicating from {self.new}: {', '.join(done) or 'none'}"
        return text + (
            f"; unreachable (repoint by hand): {', '.join(unreachable)}" if unreachable else ""
        )

    def persist(self, include_old: bool) -> str:
        """Write the roles into the config files (fencing.persist_roles)."""
        roles: dict[str, str | None] = {self.new: None}
        roles.update(dict.fromkeys([*([self.old] if include_old else []), *self.others], self.new))
        return persist_roles(self.config, roles)


def plan_promote(
    ctx: ProcedureContext,
    to: str | None,
    force: bool = False,
    gone: bool = False,
    reconcile: bool = False,
) -> Plan:
    """The manual failover plan (see the module docstring); its `data_loss` says
    whether it can lose acknowledged writes (the master does not answer). Refused
    when unsafe. `gone`: the operator says the old master is gone (no fence through
    [service]); `reconcile`: the BullMQ steps on the new master last
    (procedures/reconcile.py)."""
    config = ctx.config
    old = _address(config)
    master = node_view(config, old, None)
    if master.role is not None and master.role != "master":
        source = f"{master.info.get('master_host')}:{master.info.get('master_port')}"
        raise Refused(
            f"{old} ([target] url) answers as a replica of {source}, not as the master",
            f"point [target] url at the master ({source}?), then redis-runbook failover",
        )
    if master.role == "master":
        if gone:
            raise Refused(
                f"--old-master-gone, but the master {old} answers",
                "redis-runbook failover --to HOST:PORT (without --old-master-gone)",
            )
        replicas = _replicas_of_master(master)
        if not replicas:
            raise Refused(
                f"the master {old} answers and no replica is connected to it: "
                "there is nothing to fail over to",
                f"attach a replica first (redis-cli -h HOST -p PORT REPLICAOF "
                f"{old.replace(':', ' ')}), then redis-runbook failover --to HOST:PORT",
            )
        if to is None or to not in replicas:
            given = "no --to given" if to is None else f"{to} is not one of them"
            raise Refused(
                f"the master {old} answers: --to must name one of its replicas "
                f"({', '.join(replicas)}); {given}",
                f"redis-runbook failover --to {replicas[0]}",
            )
        step = Promotion(config, old, to, [r for r in replicas if r != to])
        switch = Switchover(config, old, FAILOVER_TIMEOUT_MS / 1000, new=to)
        plan = Plan(
            procedure="failover",
            target=ctx.where,
            confirm=Confirm.TYPED,
            confirm_word="FAILOVER",
            redis_lock=False,
            witness=QueueWitness(config, split_address(old), lambda: split_address(to)),
            notes=[
                f"master {old} answers: FAILOVER TO {to} (writes paused until {to} has "
                "acknowledged them all: nothing acknowledged is lost)",
                f"afterwards point [target] url at {to}",
            ],
            steps=[
                Step(
                    f"FAILOVER TO {to}",
                    step.failover_to,
                    destructive=True,
                    on_failure="redis-runbook health",
                ),
                Step("point the other replicas at the new master", step.repoint),
                Step(
                    "write the roles to the config files",
                    lambda: step.persist(include_old=True),
                    on_failure="redis-runbook health",
                ),
                Step("verify the new master takes writes", switch.probe_write),
            ],
        )
        return with_reconcile(plan, config, to) if reconcile else plan
    return _plan_dead_master(ctx, old, master, to, force, gone, reconcile)


def _plan_dead_master(
    ctx: ProcedureContext,
    old: str,
    master: NodeView,
    to: str | None,
    force: bool,
    gone: bool,
    reconcile: bool,
) -> Plan:
    config = ctx.config
    addresses = list(dict.fromkeys([*config.target.replicas, *([to] if to else [])]))
    views = [node_view(config, a, None) for a in addresses]
    candidates = [c for v in views if (c := Candidate.of(v)) and c.priority > 0]
    if not candidates:
        raise Refused(
            f"the master {old} does not answer ({master.error}) and no replica can be "
            f"promoted among {', '.join(addresses) or 'none configured'}",
            "list the replicas in [target] replicas (or --to HOST:PORT); priority-0 "
            "replicas are never promoted",
        )
    best = max(candidates, key=lambda c: (c.offset, -c.priority))
    chosen = next(c for c in candidates if c.address == to) if to else best
    if to and all(c.address != to for c in candidates):
        raise Refused(
            f"{to} is not a reachable replica with priority > 0",
            "redis-runbook failover --to HOST:PORT (another replica)",
        )
    if chosen.offset < best.offset and not force:
        raise Refused(
            f"{to} is {best.offset - chosen.offset} bytes behind {best.address}: promoting it "
            "would lose those writes",
            f"redis-runbook failover --to {best.address} (or --force)",
        )
    step = Promotion(
        config, old, chosen.address, [c.address for c in candidates if c.address != chosen.address]
    )
    switch = Switchover(config, old, 0, new=chosen.address)
    offsets = ", ".join(f"{c.address} {c.offset}" for c in candidates)
    fence = Fence(config, old, ctx.service, gone)
    how = (
        "you say it is gone (checked: its port must not accept connections)"
        if gone
        else f"stopped through [service] ({ctx.service.describe()}), a hung one killed"
    )
    plan = Plan(
        procedure="failover",
        target=ctx.where,
        confirm=Confirm.TYPED,
        confirm_word="GONE" if gone else "FAILOVER",
        data_loss=True,  # writes acknowledged after the chosen replica's offset
        redis_lock=False,
        notes=[
            describe_unanswering(old, master.error, config.target.connect_timeout),
            f"the old master is fenced first: {how}; nothing is promoted unless that holds",
            f"replica offsets: {offsets}; promoting {chosen.address}",
            "writes the old master acknowledged after that offset are lost",
            stopped_master_line(old, chosen.address, ctx.service),
            f"afterwards point [target] url at {chosen.address}",
        ],
        steps=[
            Step(
                "fence the old master",
                fence.run,
                destructive=True,
                on_failure="redis-runbook diagnose",
            ),
            Step(
                f"promote {chosen.address} (REPLICAOF NO ONE)",
                step.replicaof_no_one,
                destructive=True,
                on_failure="redis-runbook health",
            ),
            Step("point the other replicas at the new master", step.repoint),
            Step(
                "write the roles to the config files",
                lambda: (
                    step.persist(include_old=False)
                    + "; "
                    + stopped_master_line(old, chosen.address, ctx.service)
                ),
                on_failure="redis-runbook health",
            ),
            Step("verify the new master takes writes", switch.probe_write),
            Step(
                "read BullMQ queue counts",
                lambda: QueueWitness.describe(config, split_address(chosen.address)),
            ),
        ],
    )
    return with_reconcile(plan, config, chosen.address) if reconcile else plan
