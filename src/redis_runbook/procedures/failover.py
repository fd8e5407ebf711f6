"""`failover` on a Sentinel-managed target: a planned switchover through
`SENTINEL FAILOVER`, checked before and verified after (issue: Sentinel failover).

Refused before anything is sent when a failover is already in progress, when the
Sentinels cannot reach quorum, or when no replica is fit to be promoted (link up,
replica-priority > 0, offset within `replica_lag_bytes.critical` of the master's).
Then: record the BullMQ queue counts, ask one Sentinel to fail over, wait for a new
master (polling every Sentinel and confirming with ROLE), prove it takes writes with
a key of our own, wait for the old master to follow it, and compare the queues."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from redis_runbook.bullmq.counts import queue_counts
from redis_runbook.bullmq.discovery import discover
from redis_runbook.config import Config
from redis_runbook.errors import Refused, RunbookError
from redis_runbook.memory import info_fields
from redis_runbook.procedures.context import ProcedureContext
from redis_runbook.procedures.engine import Confirm, Plan, Runner, Step, StepFailed
from redis_runbook.redisinfo import parse_pairs
from redis_runbook.sentinel import ask_sentinels, split_address
from redis_runbook.target import make_client
from redis_runbook.topology import Topology, gather, node_command, node_view

PROBE_KEY = "redis-runbook:failover-probe"
POLL_S = 0.05
FOLLOW_TIMEOUT_S = 30.0
SYNC_TIMEOUT_S = 5.0


class FailoverContext(ProcedureContext):
    """A ProcedureContext whose runner takes only the file lock: a lock key written
    to the old master would be stranded on the new one after the switch."""

    def runner(self) -> Runner:
        """The usual runner without the Redis lock."""
        runner = super().runner()
        runner.lock_client = lambda: None
        return runner


@dataclass
class QueueWitness:
    """Jobs per queue (all states) before and after, read from the current master."""

    before: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def read(config: Config, node: tuple[str, int] | None = None) -> dict[str, int]:
        """{queue: jobs in every state} on the master (or `node`)."""
        client = make_client(config.target, decode=False, node=node)
        try:
            found = discover(client, config.bullmq.prefixes, config.bullmq.layout).queues
            return {
                c.queue.display: c.waiting
                + c.prioritized
                + c.active.total
                + c.delayed
                + c.waiting_children
                + c.completed
                + c.failed
                for c in queue_counts(client, found)
            }
        finally:
            client.close()

    def record(self, config: Config, node: tuple[str, int] | None = None) -> str:
        """Read the counts before the switch."""
        self.before = self.read(config, node)
        return f"{len(self.before)} queue(s), {sum(self.before.values())} job(s)"

    def compare(self, config: Config, node: tuple[str, int] | None = None) -> str:
        """Every queue is still there; totals reported per queue. A queue missing
        is a failure; totals may move (workers keep running)."""
        after = self.read(config, node)
        missing = sorted(set(self.before) - set(after))
        if missing:
            raise StepFailed(f"queue(s) missing on the new master: {', '.join(missing)}")
        moved = {q: after[q] - n for q, n in self.before.items() if after[q] != n}
        detail = ", ".join(f"{q} {d:+d}" for q, d in sorted(moved.items()))
        return f"{len(after)} queue(s), {sum(after.values())} job(s); " + (
            f"changed while workers ran: {detail}" if detail else "unchanged"
        )


def promotable(topology: Topology, max_lag_bytes: float) -> list[str]:
    """Replicas fit for promotion: linked, priority > 0, close enough to the master's
    offset (by the master's own INFO when it answers, else by Sentinel's view)."""
    master = next(
        (n for n in topology.nodes if n.address == topology.master_address and n.info), None
    )
    offsets: dict[str, int] = {}
    top = 0
    if master is not None:
        top = int(master.info.get("master_repl_offset", 0))
        for key, value in master.info.items():
            if key.startswith("slave") and key[5:].isdigit():
                p = parse_pairs(value)
                offsets[f"{p.get('ip')}:{p.get('port')}"] = int(p.get("offset", 0))
    fit = []
    for r in topology.replicas:
        address = f"{r.get('ip')}:{r.get('port')}"
        flags = r.get("flags", "")
        if r.get("master-link-status") != "ok" or "down" in flags or "disconnected" in flags:
            continue
        if r.get("slave-priority", "100") == "0":
            continue
        offset = offsets.get(address, int(r.get("slave-repl-offset", 0) or 0))
        if master is not None and top - offset > max_lag_bytes:
            continue
        fit.append(address)
    return fit


def refuse_reasons(topology: Topology, config: Config) -> list[str]:
    """Why a planned switchover must not start now (empty: it may)."""
    reasons = []
    if topology.master is None:
        return [f"no Sentinel answered about {topology.service}"]
    if topology.failover_in_progress:
        reasons.append(f"a failover of {topology.service} is already in progress")
    if not any(v.ckquorum_ok for v in topology.answering):
        said = next((v.ckquorum for v in topology.answering if v.ckquorum), "")
        reasons.append(f"the Sentinels cannot reach quorum ({said})")
    if not promotable(topology, config.thresholds.replica_lag_bytes.critical):
        reasons.append(
            "no replica is fit to promote (link up, replica-priority > 0, within "
            f"{config.thresholds.replica_lag_bytes.critical:g} bytes of the master)"
        )
    return reasons


def _master_address(config: Config, env: Mapping[str, str] | None) -> tuple[str, str]:
    sentinel = config.target.sentinel
    assert sentinel is not None
    who, reply = ask_sentinels(
        sentinel,
        config.target.connect_timeout,
        env,
        "SENTINEL",
        "GET-MASTER-ADDR-BY-NAME",
        sentinel.service,
    )
    return who, f"{reply[0]}:{reply[1]}" if reply else ""


def _role(config: Config, address: str, env: Mapping[str, str] | None) -> list[Any] | None:
    """The node's ROLE reply, None when it does not answer."""
    return node_view(config, address, env).role_reply or None


@dataclass
class Switchover:
    """What the steps share while they run.

    `SENTINEL FAILOVER` alone leaves the old master writable until Sentinel turns it
    into a replica on a later INFO round (up to 10 s): writes it acknowledges in that
    window are lost when it resyncs. So writes are paused on the old master first
    (`CLIENT PAUSE WRITE`, which expires by itself should we die), a replica is let
    catch up, and once the new master is up the old one is made its replica, its
    clients disconnected and only then unpaused: the paused writes fail with READONLY
    instead of being acknowledged and dropped."""

    config: Config
    old: str
    timeout_s: float
    env: Mapping[str, str] | None = None
    new: str = ""
    started: float = 0.0
    paused: bool = False

    def _on_old(self, *command: Any) -> Any:
        return node_command(self.config, self.old, *command, env=self.env)

    def pause_and_sync(self) -> str:
        """Pause writes on the old master; wait until a replica has all of them."""
        expires_ms = int((self.timeout_s + SYNC_TIMEOUT_S + FOLLOW_TIMEOUT_S) * 1000)
        try:
            self._on_old("CLIENT", "PAUSE", expires_ms, "WRITE")
        except (redis.RedisError, RunbookError):
            return f"{self.old} does not answer: no writes to pause"
        self.paused = True
        deadline = time.monotonic() + SYNC_TIMEOUT_S
        while True:
            info = info_fields(self._on_old("INFO", "replication"))
            offset = int(info.get("master_repl_offset", 0))
            acked = [
                int(parse_pairs(v).get("offset", 0))
                for k, v in info.items()
                if k.startswith("slave") and k[5:].isdigit()
            ]
            if acked and max(acked) >= offset:
                return f"writes paused on {self.old}; a replica has all of them (offset {offset})"
            if time.monotonic() > deadline:
                self.resume()
                raise StepFailed(
                    f"no replica caught up with {self.old} within {SYNC_TIMEOUT_S:g} s; "
                    "writes resumed, nothing switched"
                )
            time.sleep(POLL_S)

    def resume(self) -> None:
        """Lift the pause (after a failure: the old master stays master)."""
        if self.paused:
            with contextlib.suppress(redis.RedisError, RunbookError):
                self._on_old("CLIENT", "UNPAUSE")
            self.paused = False

    def request(self) -> str:
        """SENTINEL FAILOVER on the first Sentinel that answers."""
        sentinel = self.config.target.sentinel
        assert sentinel is not None
        self.started = time.monotonic()
        try:
            who, _ = ask_sentinels(
                sentinel,
                self.config.target.connect_timeout,
                self.env,
                "SENTINEL",
                "FAILOVER",
                sentinel.service,
            )
        except (redis.ResponseError, RunbookError) as exc:  # INPROG, NOGOODSLAVE, unreachable
            self.resume()
            raise StepFailed(f"Sentinel refused: {exc}") from None
        return f"Sentinel {who} accepted SENTINEL FAILOVER {sentinel.service}"

    def wait_new_master(self) -> str:
        """Poll until a Sentinel names another master and its ROLE says master."""
        deadline = self.started + self.timeout_s
        while True:
            _, address = _master_address(self.config, self.env)
            if address and address != self.old:
                role = _role(self.config, address, self.env)
                if role and role[0] == "master":
                    self.new = address
                    took = time.monotonic() - self.started
                    return f"new master {address} after {took:.2f} s (was {self.old})"
            if time.monotonic() > deadline:
                self.resume()
                raise StepFailed(
                    f"no new master within {self.timeout_s:g} s (Sentinel still names {address})"
                )
            time.sleep(POLL_S)

    def probe_write(self) -> str:
        """SET, GET and UNLINK a key of our own on the new master."""
        client = make_client(self.config.target, self.env, node=split_address(self.new))
        token = secrets.token_hex(8)
        try:
            client.set(PROBE_KEY, token, px=60_000)
            read: Any = client.get(PROBE_KEY)
            client.unlink(PROBE_KEY)
        finally:
            client.close()
        if read != token:
            raise StepFailed(f"the probe key read back {read!r}, not what was written")
        return f"{self.new} took a write and read it back"

    def hand_over(self) -> str:
        """Make the old master a replica of the new one (what Sentinel would do on its
        next round), disconnect its clients, lift the pause, wait for its ROLE."""
        host, port = split_address(self.new)
        if self.paused:
            try:
                self._on_old("REPLICAOF", host, port)
                self._on_old("CLIENT", "KILL", "TYPE", "normal")
            except (redis.RedisError, RunbookError):
                pass  # it died meanwhile: Sentinel reconfigures it when it returns
            self.resume()
        deadline = time.monotonic() + FOLLOW_TIMEOUT_S
        while True:
            role = _role(self.config, self.old, self.env)
            if role is None:
                return f"{self.old} does not answer: Sentinel reconfigures it when it returns"
            if role[0] == "slave" and str(role[1]) == host and int(role[2]) == port:
                return f"{self.old} is now a replica of {self.new} ({role[3]}); writes resumed"
            if time.monotonic() > deadline:
                raise StepFailed(
                    f"{self.old} still says {role[0]} after {FOLLOW_TIMEOUT_S:g} s",
                    "redis-runbook health (split_brain); Sentinel retries the reconfiguration",
                )
            time.sleep(POLL_S * 4)


def plan_sentinel_failover(ctx: ProcedureContext, env: Mapping[str, str] | None = None) -> Plan:
    """Check the topology (Refused with every reason when unsafe), then the plan."""
    config = ctx.config
    topology = gather(config, env)
    reasons = refuse_reasons(topology, config)
    if reasons:
        raise Refused(
            "failover refused, nothing was changed: " + "; ".join(reasons),
            "redis-runbook health (the topology checks say what to fix)",
        )
    master = topology.master or {}
    timeout_s = int(master.get("failover-timeout", 180_000)) / 1000
    switch = Switchover(config, topology.master_address or "", timeout_s, env)
    witness = QueueWitness()
    old = split_address(switch.old)
    fit = promotable(topology, config.thresholds.replica_lag_bytes.critical)
    return Plan(
        procedure="failover",
        target=ctx.where,
        confirm=Confirm.TYPED,
        confirm_word="FAILOVER",
        notes=[
            f"master {switch.old}; replicas fit to promote: {', '.join(fit)} "
            "(Sentinel picks by priority, then offset)",
            "writes pause on the master (about a second) so that none it acknowledges is lost; "
            "its clients are disconnected and reconnect through Sentinel",
        ],
        steps=[
            Step("record BullMQ queue counts", lambda: witness.record(config, old)),
            Step(
                "pause writes on the master until a replica has them all",
                switch.pause_and_sync,
                on_failure="redis-runbook health",
            ),
            Step(
                "ask Sentinel to fail over",
                switch.request,
                destructive=True,
                on_failure="redis-runbook health",
            ),
            Step(
                "wait for the new master",
                switch.wait_new_master,
                on_failure="redis-runbook diagnose",
            ),
            Step(
                "verify the new master takes writes",
                switch.probe_write,
                on_failure="redis-runbook diagnose",
            ),
            Step(
                "make the old master follow it, resume writes",
                switch.hand_over,
                on_failure="redis-runbook health",
            ),
            Step(
                "compare BullMQ queue counts",
                lambda: witness.compare(config, split_address(switch.new)),
                on_failure="redis-runbook queues status",
            ),
        ],
    )
