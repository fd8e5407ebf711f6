"""`recover restart` (seed §4.1): graceful SHUTDOWN SAVE, start, wait until ready,
verify PING and the keys per category against what was there before.

Unlike the seed's script there is no `sleep 5` / `sleep 3`: stopping waits for the
process to exit and starting polls PING + `loading:0` with a deadline."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis

from redis_runbook.keyspace import KeyCounts, count_by_category
from redis_runbook.procedures.context import ProcedureContext
from redis_runbook.procedures.engine import Confirm, Plan, Step, StepFailed
from redis_runbook.readiness import wait_started
from redis_runbook.replies import info_fields
from redis_runbook.service import RunState
from redis_runbook.target import redis_cli_prefix

READY_TIMEOUT_S = 120.0


@dataclass
class KeyspaceWitness:
    """Keys per category before a procedure, to verify against afterwards."""

    before: KeyCounts | None = None
    expiring: int = 0
    lines: list[str] = field(default_factory=list)

    def record(self, ctx: ProcedureContext) -> str:
        """Count keys per category now (when Redis answers)."""
        client = ctx.answering()
        if client is None:
            return "Redis does not answer: there is no keyspace to compare against afterwards"
        walker = ctx.client(decode=False)
        try:
            self.before = count_by_category(walker, ctx.config.categories)
            self.expiring = ctx.expiring_keys(client)
        finally:
            walker.close()
            client.close()
        counts = ", ".join(f"{n} {k}" for k, n in self.before.by_category.items() if n)
        return f"{self.before.scanned} keys: {counts or 'empty'}"

    def verify(self, ctx: ProcedureContext) -> str:
        """PING, then compare keys per category. Losing more keys than had a TTL
        before is a failure: those keys cannot have simply expired."""
        client = ctx.answering()
        if client is None:
            raise StepFailed(f"{ctx.where} does not answer PING after the restart")
        client.close()
        if self.before is None:
            return "PING answered (no keyspace was recorded before)"
        walker = ctx.client(decode=False)
        try:
            after = count_by_category(walker, ctx.config.categories)
        finally:
            walker.close()
        diff = self.before.diff(after)
        lost = -sum(d for d in diff.values() if d < 0)
        changes = ", ".join(f"{k} {d:+d}" for k, d in diff.items() if d) or "no change"
        if lost > self.expiring:
            raise StepFailed(
                f"{lost} keys missing after the restart, more than the {self.expiring} that "
                f"had a TTL ({changes})",
            )
        return f"PING ok; {after.scanned} keys; per category: {changes}"


def replication_role(ctx: ProcedureContext) -> str | None:
    """`master`, or `slave of HOST:PORT`, from INFO replication (None: no answer)."""
    client = ctx.answering()
    if client is None:
        return None
    try:
        info = info_fields(client.execute_command("INFO", "replication"))
    except redis.RedisError:
        return None
    finally:
        client.close()
    role = info.get("role", "?")
    if role == "slave":
        return f"slave of {info.get('master_host')}:{info.get('master_port')}"
    return role


def plan_restart(ctx: ProcedureContext, save: bool = True) -> Plan:
    """Build the restart plan from the current state."""
    service = ctx.service
    state = service.state()
    witness = KeyspaceWitness()
    target = ctx.config.target
    role_before: list[str | None] = [None]

    def stop() -> str:
        role_before[0] = replication_role(ctx)
        if state.state is RunState.STOPPED:
            return f"already stopped ({state.detail})"
        service.stop(save=save)
        return "stopped after saving the dataset" if save else "stopped without saving"

    def start() -> str:
        service.start()
        return f"started {service.describe()}"

    def wait() -> str:
        waited = wait_started(service, target, READY_TIMEOUT_S)
        # A role set at run time (REPLICAOF, a failover) and never written to the
        # config is lost by a restart: a master back as a replica refuses every write.
        before, after = role_before[0], replication_role(ctx)
        if before is not None and after is not None and before.split()[0] != after.split()[0]:
            cli = redis_cli_prefix(target)
            how = "REPLICAOF NO ONE" if before == "master" else f"REPLICAOF {before[9:]}"
            raise StepFailed(
                f"Redis came back as {after}, it was {before}: its config file says "
                "otherwise (a role changed at run time was never written to it)",
                "make sure no other node took its place (redis-runbook health: split_brain), "
                f"then {cli} {how.replace(':', ' ')}; {cli} CONFIG REWRITE",
            )
        return f"answering with its data loaded after {waited:.1f} s"

    notes = [f"service: {service.describe()} is {state.state.value} ({state.detail})"]
    if not save:
        notes.append("without saving: writes since the last RDB/AOF fsync are lost")
    return Plan(
        procedure="recover restart",
        target=ctx.where,
        confirm=Confirm.YES_NO,
        notes=notes,
        steps=[
            Step("record keys per category", lambda: witness.record(ctx)),
            Step(
                "stop Redis " + ("with SHUTDOWN SAVE" if save else "WITHOUT saving"),
                stop,
                destructive=not save,
            ),
            Step("start Redis", start, on_failure="redis-runbook diagnose"),
            Step(
                "wait until Redis answers with its data loaded",
                wait,
                on_failure="redis-runbook diagnose",
            ),
            Step(
                "verify PING and keys per category",
                lambda: witness.verify(ctx),
                on_failure="redis-runbook diagnose; what was done: redis-runbook journal",
            ),
        ],
    )
