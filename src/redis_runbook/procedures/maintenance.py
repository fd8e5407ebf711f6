"""`--pause-queues` on a recovery procedure or a failover: every running BullMQ v5
queue paused as the plan's first step (before the witness records anything), resumed
as its last (after the verification), and resumed also when a step in between failed
— the runner runs a step marked `always` after a failure and adds what it did to the
failure's message.

The pause is `queues pause`'s (recorded in the journal), and the resume follows
`queues resume --all`'s rules for the queues this run paused: a queue someone
resumed, or paused again, meanwhile is left as it is; a queue whose data was
replaced (a restore: the paused event is not in its stream) is not ours any more.
The resume acts on whichever node is the master then (after a failover without
Sentinel: the one master among the old master, the replicas and --to). When it
cannot run (Redis down after a failed step), it fails naming the command that
resumes those queues."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import redis

from redis_runbook.bullmq.discovery import discover
from redis_runbook.bullmq.keys import QueueRef
from redis_runbook.bullmq.pause import pause_state, set_paused, touched_since
from redis_runbook.config import Config
from redis_runbook.errors import Refused
from redis_runbook.procedures.context import ProcedureContext
from redis_runbook.procedures.engine import Plan, Step, StepFailed
from redis_runbook.procedures.pause import Ledger, decide, refuse_replica, resume_one
from redis_runbook.replies import parse_info, text
from redis_runbook.target import make_client, target_at


@dataclass
class PausedQueues:
    """The queues to pause for one procedure, and the ones its pause step paused."""

    ctx: ProcedureContext
    procedure: str
    queues: list[QueueRef]
    #: HOST:PORT of the nodes one of which is the master when the resume runs (a
    #: failover without Sentinel); empty: the target's own client finds it.
    nodes: list[str] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)

    def pause(self) -> str:
        """Pause each queue still running; record each one paused."""
        ledger = Ledger(self.ctx, self.procedure)
        client = self.ctx.client(decode=False)
        already = []
        try:
            for queue in self.queues:
                result = set_paused(client, queue, pause=True)
                if result.outcome == "paused":
                    ledger.write(queue.display, "paused", "paused", result.event_id)
                    self.paused.append(queue.display)
                elif result.outcome == "unchanged":
                    already.append(queue.display)
                else:
                    raise StepFailed(
                        f"{queue.display}: both wait and paused hold jobs: not paused "
                        f"(paused before it: {', '.join(self.paused) or 'none'})",
                        "redis-runbook queues status",
                    )
        finally:
            client.close()
        others = f"; already paused by someone else: {', '.join(already)}" if already else ""
        return f"paused {', '.join(self.paused) or 'nothing'}{others}"

    def resume(self) -> str:
        """Resume the queues the pause step paused that are still ours."""
        if not self.paused:
            return "no queue was paused"
        ledger = Ledger(self.ctx, self.procedure)
        hint = "once the master answers, with [target] at it: redis-runbook queues resume " + (
            " ".join(f"--queue {name}" for name in self.paused)
        )
        try:
            client = self._master()
            try:
                return self._resume(client, ledger)
            finally:
                client.close()
        except (redis.RedisError, Refused) as exc:
            why = exc.message if isinstance(exc, Refused) else f"{type(exc).__name__}: {exc}"
            raise StepFailed(f"{', '.join(self.paused)} still paused: {why}", hint) from None

    def _master(self) -> redis.Redis:
        """A client of the master: the target's, or the one node of `nodes` that
        says it is a master (Refused when none or several do)."""
        if not self.nodes:
            return self.ctx.client(decode=False)
        masters: list[tuple[str, redis.Redis]] = []
        for address in self.nodes:
            client = make_client(target_at(self.ctx.config.target, address), decode=False)
            try:
                info = parse_info(text(client.execute_command("INFO", "replication")))
            except redis.RedisError:
                info = {}
            if info.get("role") == "master":
                masters.append((address, client))
            else:
                client.close()
        if len(masters) == 1:
            return masters[0][1]
        for _, client in masters:
            client.close()
        found = ", ".join(a for a, _ in masters) or "none"
        raise Refused(f"not one master among {', '.join(self.nodes)} (masters: {found})")

    def _resume(self, client: redis.Redis, ledger: Ledger) -> str:
        refuse_replica(client)
        config = self.ctx.config.bullmq
        found = {q.display: q for q in discover(client, config.prefixes, config.layout).queues}
        ours = ledger.ours()
        resumed, kept = [], []
        for name in self.paused:
            if name not in ours:
                continue  # resumed since by `queues resume`
            queue = found.get(name)
            state = pause_state(client, queue) if queue and queue.layout == "v5" else None
            why = touched_since(client, queue, ours[name]) if queue and state else ""
            decision = decide(name, state, True, why, named=False)
            if decision.action == "forget":
                ledger.write(name, "released", decision.note)
            if decision.action == "resume" and queue is not None:
                if resume_one(client, ledger, queue)[0]:
                    resumed.append(name)
            elif decision.note:
                kept.append(decision.note)
        return f"resumed {', '.join(resumed) or 'nothing'}" + "".join(f"; {k}" for k in kept)


def with_paused_queues(ctx: ProcedureContext, plan: Plan, nodes: Sequence[str] = ()) -> Plan:
    """`plan` with the running v5 queues paused first and resumed last (also after a
    failure), on the master among `nodes` when given (a failover without Sentinel:
    the old master, the replicas, --to); a note instead when there is nothing to
    pause (Redis down, a replica, no running queue)."""
    queues, why = _running(ctx)
    if not queues:
        plan.notes.append(f"--pause-queues: {why}: nothing paused")
        return plan
    names = ", ".join(q.display for q in queues)
    paused = PausedQueues(ctx, plan.procedure, queues, list(dict.fromkeys(nodes)))
    plan.notes.append(
        f"--pause-queues: {names} paused first, resumed after the verification "
        "(also when a step fails)"
    )
    plan.steps = [
        Step(f"pause the queues ({names})", paused.pause, on_failure="redis-runbook queues status"),
        *plan.steps,
        Step("resume the queues paused first", paused.resume, always=True),
    ]
    return plan


def _running(ctx: ProcedureContext) -> tuple[list[QueueRef], str]:
    """The v5 queues running now, or none and why."""
    answering = ctx.answering()
    if answering is None:
        return [], "Redis does not answer (workers cannot take jobs from it)"
    answering.close()
    client = ctx.client(decode=False)
    try:
        refuse_replica(client)
        config = ctx.config.bullmq
        found = discover(client, config.prefixes, config.layout).queues
        running = [q for q in found if q.layout == "v5" and not pause_state(client, q).paused]
    except Refused as exc:
        return [], exc.message
    except redis.RedisError as exc:
        return [], f"Redis could not be read ({type(exc).__name__}: {exc})"
    finally:
        client.close()
    return running, "no running BullMQ v5 queue"


def failover_nodes(config: Config, to: str | None) -> list[str]:
    """Where a failover's resume looks for the master: nowhere in particular with
    Sentinel (its clients find the master), else the old master, the replicas, --to."""
    if config.target.sentinel is not None:
        return []
    parts = urlsplit(config.target.url)
    old = [f"{parts.hostname}:{parts.port or 6379}"] if parts.hostname else []
    return [*old, *config.target.replicas, *([to] if to else [])]
