"""`failover` on a Sentinel-managed target: a planned switchover through
`SENTINEL FAILOVER`, checked before and verified after (issue: Sentinel failover).

Refused before anything is sent when a failover is already in progress, when the
Sentinels cannot reach quorum, or when no replica is fit to be promoted (link up,
replica-priority > 0, offset within `replica_lag_bytes.critical` of the master's).
Then: record the BullMQ queue counts, ask one Sentinel to fail over, wait for a new
master (polling every Sentinel and confirming with ROLE), prove it takes writes with
a key of our own, wait for the old master to follow it, compare the queues, and wait
until the replicas (the old master among them) are linked to the new master and the
Sentinels say so (procedures/replica_links.py)."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from redis_runbook.bullmq.counts import queue_counts
from redis_runbook.bullmq.discovery import discover
from redis_runbook.config import Config
from redis_runbook.errors import Refused, RunbookError
from redis_runbook.procedures.context import ProcedureContext
from redis_runbook.procedures.engine import Confirm, Plan, Step, StepFailed
from redis_runbook.procedures.reconcile import with_reconcile
from redis_runbook.procedures.replica_links import LINK_TIMEOUT_S, wait_linked
from redis_runbook.procedures.write_pause import WritePause, disconnect_clients
from redis_runbook.replies import info_fields, parse_pairs
from redis_runbook.target import make_client
from redis_runbook.target.sentinel import ask_sentinels, split_address
from redis_runbook.target.topology import Topology, gather, node_command, node_view

PROBE_KEY = "redis-runbook:failover-probe"
POLL_S = 0.05
FOLLOW_TIMEOUT_S = 30.0
SYNC_TIMEOUT_S = 5.0


def _jobs(counts: dict[str, int]) -> str:
    return f"{len(counts)} queue(s), {sum(counts.values())} job(s)"


@dataclass
class QueueWitness:
    """Jobs per queue (all states) on the old master before the switch and on the
    new one after it (a Witness; `new` names the new master once it is known)."""

    config: Config
    old: tuple[str, int] | None
    new: Callable[[], tuple[str, int] | None]
    before: dict[str, int] = field(default_factory=dict)
    recording = "record BullMQ queue counts"
    comparing = "compare BullMQ queue counts"

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

    @classmethod
    def describe(cls, config: Config, node: tuple[str, int] | None = None) -> str:
        """Queues and jobs on `node` (the master when None), in one sentence."""
        return _jobs(cls.read(config, node))

    def record(self) -> str:
        """Read the counts before the switch."""
        self.before = self.read(self.config, self.old)
        return _jobs(self.before)

    def compare(self) -> str:
        """Every queue is still there; totals reported per queue. A queue missing
        is a failure; totals may move (workers keep running)."""
        after = self.read(self.config, self.new())
        missing = sorted(set(self.before) - set(after))
        if missing:
            raise StepFailed(f"queue(s) missing on the new master: {', '.join(missing)}")
        moved = {q: after[q] - n for q, n in self.before.items() if after[q] != n}
        detail = ", ".join(f"{q} {d:+d}" for q, d in sorted(moved.items()))
        return f"{_jobs(after)}; " + (
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
    (`CLIENT PAUSE WRITE` in 2 s leases renewed from a background thread, so that a
    tool that dies frees writes within 2 s), a replica is let catch up, and once the
    new master is up the old one is made its replica, its clients disconnected
    (Sentinel's links kept) and only then unpaused: the paused writes fail with
    READONLY instead of being acknowledged and dropped. Any failure of a step while
    writes are paused lifts the pause (after fencing the old master when a new one
    was already confirmed)."""

    config: Config
    old: str
    timeout_s: float
    env: Mapping[str, str] | None = None
    new: str = ""
    started: float = 0.0
    replicas: list[str] = field(default_factory=list)  # linked before the switch
    unlinked_before: list[str] = field(default_factory=list)
    pause: WritePause | None = None
    old_answers: bool = True

    def _on_old(self, *command: Any) -> Any:
        return node_command(self.config, self.old, *command, env=self.env)

    def guarded(self, action: Callable[[], str]) -> Callable[[], str]:
        """`action`, lifting the pause should it raise anything (Ctrl-C included)."""

        def run() -> str:
            try:
                return action()
            except BaseException:
                self.resume()
                raise

        return run

    def pause_and_sync(self) -> str:
        """Pause writes on the old master; wait until a replica has all of them."""
        max_s = self.timeout_s + SYNC_TIMEOUT_S + FOLLOW_TIMEOUT_S
        pause = WritePause(self.config, self.old, max_s, self.env)
        try:
            pause.start()
        except (redis.RedisError, RunbookError):
            return f"{self.old} does not answer: no writes to pause"
        self.pause = pause
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
                return (
                    f"writes paused on {self.old} (renewed 2 s leases); a replica has all "
                    f"of them (offset {offset})"
                )
            if time.monotonic() > deadline:
                self.resume()
                raise StepFailed(
                    f"no replica caught up with {self.old} within {SYNC_TIMEOUT_S:g} s; "
                    "writes resumed, nothing switched"
                )
            time.sleep(POLL_S)

    def resume(self) -> None:
        """Lift the pause. When a new master was confirmed, the old one is made its
        replica first: it must not take writes that the new master never sees."""
        if self.pause is None:
            return
        if self.new:
            host, port = split_address(self.new)
            with contextlib.suppress(redis.RedisError, RunbookError):
                self._on_old("REPLICAOF", host, port)
        self.pause.stop(unpause=True)
        self.pause = None

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
        next round), disconnect its clients but Sentinel's, lift the pause, wait for
        its ROLE."""
        host, port = split_address(self.new)
        notes = ""
        if self.pause is not None:
            pause = self.pause
            try:
                self._on_old("REPLICAOF", host, port)
                pause.stop(unpause=False)  # it refuses writes now (READONLY)
                killed, kept = disconnect_clients(self.config, self.old, self.env)
                notes = f"; {killed} client(s) disconnected, {kept} Sentinel link(s) kept"
            except (redis.RedisError, RunbookError):
                pass  # it died meanwhile: Sentinel reconfigures it when it returns
            if pause.lapsed_s > 0 or pause.expired:
                why = (
                    f"it reached its {pause.max_s:g} s bound"
                    if pause.expired
                    else f"a renewal came {pause.lapsed_s:.1f} s late"
                )
                notes += (
                    f"; WARNING the write pause on {self.old} may have lapsed ({why}): "
                    f"writes it acknowledged then may be missing on {self.new}"
                )
            pause.stop(unpause=True)
            self.pause = None
        deadline = time.monotonic() + FOLLOW_TIMEOUT_S
        while True:
            role = _role(self.config, self.old, self.env)
            if role is None:
                self.old_answers = False
                return f"{self.old} does not answer: Sentinel reconfigures it when it returns"
            if role[0] == "slave" and str(role[1]) == host and int(role[2]) == port:
                state = f"{self.old} is now a replica of {self.new} ({role[3]})"
                return f"{state}{notes}; writes resumed"
            if time.monotonic() > deadline:
                raise StepFailed(
                    f"{self.old} still says {role[0]} after {FOLLOW_TIMEOUT_S:g} s",
                    "redis-runbook health (split_brain); Sentinel retries the reconfiguration",
                )
            time.sleep(POLL_S * 4)

    def wait_replicas(self) -> str:
        """Until the replicas (the old master among them, when it answers) replicate
        from the new master and the Sentinels see it (replica_links.py)."""
        expected = [r for r in self.replicas if r != self.new]
        if self.old_answers:
            expected.append(self.old)
        text = wait_linked(self.config, self.new, expected, self.env)
        left_out = [r for r in self.unlinked_before if r != self.new]
        if left_out:
            text += f"; not counted (not replicating before the switch): {', '.join(left_out)}"
        return text


def plan_sentinel_failover(
    ctx: ProcedureContext, env: Mapping[str, str] | None = None, reconcile: bool = False
) -> Plan:
    """Check the topology (Refused with every reason when unsafe), then the plan
    (`reconcile`: the BullMQ steps on the new master last, procedures/reconcile.py)."""
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
    for replica in topology.replicas:
        flags = replica.get("flags", "")
        linked = replica.get("master-link-status") == "ok" and not (
            "down" in flags or "disconnected" in flags
        )
        address = f"{replica.get('ip')}:{replica.get('port')}"
        (switch.replicas if linked else switch.unlinked_before).append(address)
    witness = QueueWitness(config, split_address(switch.old), lambda: split_address(switch.new))
    fit = promotable(topology, config.thresholds.replica_lag_bytes.critical)
    plan = Plan(
        procedure="failover",
        target=ctx.where,
        confirm=Confirm.TYPED,
        confirm_word="FAILOVER",
        redis_lock=False,
        notes=[
            f"master {switch.old}; replicas fit to promote: {', '.join(fit)} "
            "(Sentinel picks by priority, then offset)",
            "writes pause on the master (about a second, in 2 s leases the tool renews: "
            "should it die, writes resume within 2 s) so that none it acknowledges is lost; "
            "its clients are disconnected (not Sentinel's) and reconnect through Sentinel",
            f"the last step waits up to {LINK_TIMEOUT_S:g} s for the replicas to follow "
            "the new master",
        ],
        steps=[
            # Not the plan's witness: the counts are compared before the last step,
            # which waits up to LINK_TIMEOUT_S for the replicas and may fail alone.
            Step(witness.recording, witness.record),
            Step(
                "pause writes on the master until a replica has them all",
                switch.guarded(switch.pause_and_sync),
                on_failure="redis-runbook health",
            ),
            Step(
                "ask Sentinel to fail over",
                switch.guarded(switch.request),
                destructive=True,
                on_failure="redis-runbook health",
            ),
            Step(
                "wait for the new master",
                switch.guarded(switch.wait_new_master),
                on_failure="redis-runbook diagnose",
            ),
            Step(
                "verify the new master takes writes",
                switch.guarded(switch.probe_write),
                on_failure="redis-runbook diagnose",
            ),
            Step(
                "make the old master follow it, resume writes",
                switch.guarded(switch.hand_over),
                on_failure="redis-runbook health",
            ),
            Step(witness.comparing, witness.compare, on_failure="redis-runbook queues status"),
            Step(
                "wait for the replicas to follow the new master",
                switch.wait_replicas,
                on_failure="redis-runbook health",
            ),
        ],
    )
    return with_reconcile(plan, config, None) if reconcile else plan
