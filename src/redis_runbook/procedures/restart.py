"""`recover restart` (seed §4.1): graceful SHUTDOWN SAVE, start, wait until ready,
verify PING and the keyspace against what was there before (INFO keyspace: no walk
of the keys unless they went missing or --verify-categories asks for it).

Unlike the seed's script there is no `sleep 5` / `sleep 3`: stopping waits for the
process to exit and starting polls PING + `loading:0` with a deadline."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from redis_runbook.keyspace import KeyCounts, count_by_category
from redis_runbook.procedures.context import ProcedureContext
from redis_runbook.procedures.engine import Confirm, Plan, Step, StepFailed
from redis_runbook.readiness import wait_started
from redis_runbook.replies import info_fields, keyspace
from redis_runbook.service import RunState, ServiceState
from redis_runbook.target import redis_cli_prefix

READY_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Keyspace:
    """Keys and keys with a TTL over every database (INFO keyspace: O(1))."""

    keys: int
    expires: int


def read_keyspace(client: redis.Redis) -> tuple[Keyspace, int | None]:
    """The keyspace totals, and the keys the last load read from the RDB
    (`rdb_last_load_keys_loaded`, Redis 7.0+; None when unknown or when the server
    loads its AOF, which that figure does not count). One round trip: INFO of both
    sections (Redis 7.0+)."""
    info = info_fields(client.execute_command("INFO", "keyspace", "persistence"))
    dbs = keyspace(info)
    loaded = info.get("rdb_last_load_keys_loaded")
    if info.get("aof_enabled") == "1":
        loaded = None
    totals = Keyspace(sum(d.keys for d in dbs), sum(d.expires for d in dbs))
    return totals, int(loaded) if loaded is not None and loaded.isdigit() else None


def _per_category(counts: KeyCounts) -> str:
    return ", ".join(f"{k} {n}" for k, n in counts.by_category.items() if n) or "empty"


@dataclass
class KeyspaceWitness:
    """What a restart must keep. By default O(1): keys and keys with a TTL over every
    database (INFO keyspace) before the stop and after the load; losing more keys
    than had a TTL fails the step, and only then are the keys per category walked
    (SCAN, while Redis serves) to say where they are missing. With `categories`
    (`--verify-categories`) the keys per category are walked before and after too,
    and a category short by more than the keys with a TTL fails."""

    ctx: ProcedureContext
    categories: bool = False
    before: Keyspace | None = None
    before_categories: KeyCounts | None = None

    @property
    def recording(self) -> str:
        """The first step's title."""
        return "record the keyspace (INFO keyspace" + (
            "; keys per category, one SCAN walk)" if self.categories else ")"
        )

    @property
    def comparing(self) -> str:
        """The last step's title."""
        return "verify PING and the keyspace" + (" per category" if self.categories else "")

    def _walk(self) -> KeyCounts:
        walker = self.ctx.client(decode=False)
        try:
            return count_by_category(walker, self.ctx.config.categories)
        finally:
            walker.close()

    def record(self) -> str:
        """The keyspace totals now (when Redis answers), per category if asked."""
        client = self.ctx.answering()
        if client is None:
            return "Redis does not answer: there is no keyspace to compare against afterwards"
        try:
            self.before, _ = read_keyspace(client)
        finally:
            client.close()
        said = f"{self.before.keys} keys, {self.before.expires} with a TTL"
        if self.categories:
            self.before_categories = self._walk()
            said += f"; per category: {_per_category(self.before_categories)}"
        return said

    def compare(self) -> str:
        """PING, then the totals against those recorded. Losing more keys than had a
        TTL before is a failure: those keys cannot have simply expired."""
        hint = "redis-runbook diagnose; what was done: redis-runbook journal"
        client = self.ctx.answering()
        if client is None:
            raise StepFailed(f"{self.ctx.where} does not answer PING after the restart", hint)
        try:
            after, loaded = read_keyspace(client)
        finally:
            client.close()
        if self.before is None:
            return f"PING answered; {after.keys} keys (no keyspace was recorded before)"
        read = f"; the load read {loaded} from the RDB" if loaded is not None else ""
        said = f"{after.keys} keys, {self.before.keys} before{read}"
        lost = self.before.keys - after.keys
        if lost > self.before.expires:
            now = self._walk()  # where are they missing? Redis serves meanwhile
            before = self.before_categories
            raise StepFailed(
                f"{lost} keys missing after the restart, more than the {self.before.expires} "
                f"that had a TTL ({said}); keys per category now: {_per_category(now)}"
                + (_changes(before.diff(now)) if before is not None else ""),
                hint,
            )
        if self.before_categories is None:
            return f"PING ok; {said}"
        diff = self.before_categories.diff(self._walk())
        short = -sum(d for d in diff.values() if d < 0)
        if short > self.before.expires:
            raise StepFailed(
                f"{short} keys missing from their categories, more than the "
                f"{self.before.expires} that had a TTL ({said})" + _changes(diff),
                hint,
            )
        return f"PING ok; {said}" + _changes(diff)


def _changes(diff: dict[str, int]) -> str:
    """`; per category: session -3, cache +1` (KeyCounts.diff), or `no change`."""
    return "; per category: " + (
        ", ".join(f"{k} {d:+d}" for k, d in diff.items() if d) or "no change"
    )


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


@dataclass
class Restart:
    """The restart's steps over what they share: the service as it was planned, and
    the replication role Redis had when it was stopped."""

    ctx: ProcedureContext
    planned: ServiceState
    save: bool
    role_before: str | None = None

    def stop(self) -> str:
        """Note the role, then stop (SHUTDOWN SAVE, or without saving)."""
        self.role_before = replication_role(self.ctx)
        if self.planned.state is RunState.STOPPED:
            return f"already stopped ({self.planned.detail})"
        self.ctx.service.stop(save=self.save)
        return "stopped after saving the dataset" if self.save else "stopped without saving"

    def start(self) -> str:
        """Start the service."""
        self.ctx.service.start()
        return f"started {self.ctx.service.describe()}"

    def wait(self) -> str:
        """Until Redis answers with its data loaded, in the role it had. A role set at
        run time (REPLICAOF, a failover) and never written to the config is lost by a
        restart: a master back as a replica refuses every write."""
        target = self.ctx.config.target
        waited = wait_started(self.ctx.service, target, READY_TIMEOUT_S)
        before, after = self.role_before, replication_role(self.ctx)
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


def plan_restart(ctx: ProcedureContext, save: bool = True, verify_categories: bool = False) -> Plan:
    """Build the restart plan from the current state (`verify_categories`: walk the
    keys per category before and after, see KeyspaceWitness)."""
    service = ctx.service
    state = service.state()
    restart = Restart(ctx, state, save)
    notes = [f"service: {service.describe()} is {state.state.value} ({state.detail})"]
    if not save:
        notes.append("without saving: writes since the last RDB/AOF fsync are lost")
    return Plan(
        procedure="recover restart",
        target=ctx.where,
        confirm=Confirm.YES_NO,
        notes=notes,
        witness=KeyspaceWitness(ctx, verify_categories),
        steps=[
            Step(
                "stop Redis " + ("with SHUTDOWN SAVE" if save else "WITHOUT saving"),
                restart.stop,
                destructive=not save,
            ),
            Step("start Redis", restart.start, on_failure="redis-runbook diagnose"),
            Step(
                "wait until Redis answers with its data loaded",
                restart.wait,
                on_failure="redis-runbook diagnose",
            ),
        ],
    )
