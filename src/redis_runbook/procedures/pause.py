"""`queues pause` / `queues resume` as plans: BullMQ v5's global pause
(bullmq/pause.py), with the journal as the record of which queues this tool paused,
so that `resume --all` resumes exactly those and never a queue an operator paused on
purpose.

The ledger is read from the journal (the state dir's `journal.jsonl`): an entry whose
figures carry `pause_ledger` = `paused` makes a queue ours (with the id of the `paused`
event our script added), `resumed` or `released` makes it not ours any more. A queue
is recorded only when our script changed it from running to paused, so:
- a queue already paused when `pause` ran (by anyone, us included) is not recorded
  again: two pauses in a row keep the first record, an operator's pause is never ours;
- a queue resumed by hand meanwhile is found running by `resume --all` and released;
- a queue resumed by hand and paused again by someone (a `resumed` or `paused` event
  after ours in its stream) is left paused and released: it is theirs now;
- a queue whose data was replaced since (a restore: its stream reaches back past our
  `paused` event but does not hold it) is left as it is and released;
- a queue gone with its data (an emergency start) stays recorded: if the data comes
  back, it is resumed; if the application creates it afresh, it is released.

Refused on a replica: the writes would fail, or diverge from the master."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from redis_runbook.bullmq.keys import QueueRef
from redis_runbook.bullmq.pause import (
    PauseResult,
    PauseState,
    pause_state,
    set_paused,
    touched_since,
)
from redis_runbook.errors import Refused
from redis_runbook.journal import Journal, redact
from redis_runbook.procedures.context import ProcedureContext
from redis_runbook.procedures.engine import Confirm, Plan, Step, StepFailed
from redis_runbook.replies import parse_info, text

LEDGER = "pause_ledger"
STATUS_HINT = "redis-runbook queues status"


def paused_by_runbook(entries: Iterable[dict[str, Any]], target: str) -> dict[str, str]:
    """The queues (display name -> id of our `paused` event) this tool paused on
    `target` and has not resumed or released since, from journal entries in order."""
    ours: dict[str, str] = {}
    where = redact(target)
    for entry in entries:
        figures = entry.get("figures") or {}
        kind, queue = figures.get(LEDGER), figures.get("queue")
        if entry.get("target") != where or not isinstance(queue, str):
            continue
        if kind == "paused":
            ours[queue] = str(figures.get("event_id", ""))
        elif kind in ("resumed", "released"):
            ours.pop(queue, None)
    return ours


@dataclass
class PauseReport:
    """What a pause or resume plan will do and did, per queue (display names)."""

    action: str
    planned: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    left_alone: list[str] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The report as the `pause` member of the command's JSON."""
        return {
            "action": self.action,
            "planned": self.planned,
            "done": self.done,
            "unchanged": self.unchanged,
            "left_alone": self.left_alone,
            "forgotten": self.forgotten,
        }

    def summary(self) -> str:
        """The closing line."""
        verb = "paused" if self.action == "pause" else "resumed"
        parts = [f"queues {self.action}: {verb} {len(self.done)} queue(s)"]
        if self.done:
            parts[0] += f" ({', '.join(self.done)})"
        if self.unchanged:
            parts.append(f"{len(self.unchanged)} changed by someone else meanwhile, left as is")
        if self.left_alone:
            parts.append(f"left alone: {', '.join(self.left_alone)}")
        return "; ".join(parts)


def refuse_replica(client: redis.Redis) -> None:
    """Refused (exit 3) unless the target is a master."""
    role = parse_info(text(client.execute_command("INFO", "replication"))).get("role", "?")
    if role != "master":
        raise Refused(
            f"the target is a {role}: queues are paused and resumed on the master",
            "point [target] url at the master (redis-runbook config show)",
        )


def _v5_only(queues: Sequence[QueueRef], named: bool, notes: list[str]) -> list[QueueRef]:
    """The v5-layout queues; a named v6 queue is refused, one found by --all noted."""
    v6 = [q.display for q in queues if q.layout != "v5"]
    if v6 and named:
        raise Refused(
            f"queue(s) {', '.join(v6)} use the BullMQ v6 layout: this tool pauses v5 queues only",
            "pause a v6 queue with BullMQ v6 itself (queue.pause())",
        )
    notes += [f"{name}: BullMQ v6 layout, left alone" for name in v6]
    return [q for q in queues if q.layout == "v5"]


class Ledger:
    """Journal writes of the ledger for one plan."""

    def __init__(self, ctx: ProcedureContext, procedure: str) -> None:
        self.journal = Journal.in_dir(ctx.config.runbook.state_dir)
        self.target = ctx.where
        self.procedure = procedure

    def write(self, queue: str, kind: str, message: str, event_id: str = "") -> None:
        """Journal `kind` (paused, resumed, released) for `queue`."""
        figures: dict[str, Any] = {LEDGER: kind, "queue": queue}
        if event_id:
            figures["event_id"] = event_id
        self.journal.record(target=self.target, procedure=self.procedure,
                            step=f"{queue}: pause record", outcome=kind, message=message,
                            figures=figures)  # fmt: skip

    def ours(self) -> dict[str, str]:
        """The queues this tool paused on the target and still counts as its own."""
        return paused_by_runbook(self.journal.entries(), self.target)


def _conflict(result: PauseResult) -> StepFailed:
    return StepFailed(
        f"{result.queue.display}: both wait ({result.wait}) and paused ({result.paused_list}) "
        "hold jobs, and BullMQ's RENAME would overwrite one of them: nothing changed "
        "(a v6-layout writer pushed into wait?)",
        f"{STATUS_HINT}; move the jobs of one list by hand before you run this again",
    )


def plan_pause(ctx: ProcedureContext, queues: Sequence[QueueRef], named: bool) -> Plan:
    """Pause every running v5 queue of `queues`; a queue already paused is noted and
    left as it is (never recorded as ours). `named`: the queues were given by --queue."""
    notes: list[str] = []
    client = ctx.client(decode=False)
    try:
        refuse_replica(client)
        states = [pause_state(client, q) for q in _v5_only(queues, named, notes)]
    finally:
        client.close()
    ledger = Ledger(ctx, "queues pause")
    ours = ledger.ours()
    report = PauseReport("pause")
    steps: list[Step] = []
    for state in states:
        name = state.queue.display
        if state.paused:
            who = "by redis-runbook" if name in ours else "not by redis-runbook"
            notes.append(f"{name}: already paused ({who}), left as it is")
            report.left_alone.append(name)
            continue
        report.planned.append(name)
        steps.append(_pause_step(ctx, ledger, state.queue, report))
    if not steps:
        notes.append("no running queue to pause")
    return Plan(
        procedure="queues pause",
        target=ctx.where,
        steps=steps,
        confirm=Confirm.YES_NO if steps else Confirm.NONE,
        notes=notes,
        extra=lambda: {"pause": report.to_json()},
        summary=report.summary,
    )


def _pause_step(
    ctx: ProcedureContext, ledger: Ledger, queue: QueueRef, report: PauseReport
) -> Step:
    name = queue.display

    def run() -> str:
        client = ctx.client(decode=False)
        try:
            result = set_paused(client, queue, pause=True)
        finally:
            client.close()
        if result.outcome == "conflict":
            raise _conflict(result)
        if result.outcome == "unchanged":
            report.unchanged.append(name)
            return "paused by someone else meanwhile: left as it is, not recorded as ours"
        message = f"paused; {result.wait} waiting job(s) moved to the paused list"
        ledger.write(name, "paused", message, result.event_id)
        report.done.append(name)
        return message + "; workers take no new job"

    return Step(f"{name}: pause", run, on_failure=STATUS_HINT)


@dataclass(frozen=True)
class Decision:
    """What resume does to one queue: `resume` it, `forget` our record of it (Redis
    untouched), or nothing; `note` for the plan, `left_alone` when it stays paused."""

    action: str
    note: str = ""
    left_alone: bool = False


def decide(name: str, state: PauseState | None, mine: bool, touched: str, named: bool) -> Decision:
    """Resume's rule for one queue: `state` None when it is no longer a v5 queue,
    `mine` when the journal says this tool paused it, `touched` why it is not ours
    any more (touched_since), `named` when --queue named it."""
    if state is None:  # gone with its data (an emergency start), or removed
        return Decision(
            "none",
            f"{name}: paused by redis-runbook, not a v5 queue now: still recorded (resumed by "
            "queues resume --all if its data comes back paused)",
        )
    if not state.paused:
        if mine:
            return Decision(
                "forget", f"{name}: resumed by someone else since redis-runbook paused it"
            )
        return Decision("none", f"{name}: not paused" if named else "")
    if named:
        note = "" if mine else f"{name}: paused, not by redis-runbook; resumed because you named it"
        return Decision("resume", note)
    if not mine:
        return Decision("none", f"{name}: paused, not by redis-runbook: left paused", True)
    if touched:
        return Decision(
            "forget",
            f"{name}: {touched}: left paused; resume it by name: "
            f"redis-runbook queues resume --queue {name}",
            True,
        )
    return Decision("resume")


def plan_resume(ctx: ProcedureContext, queues: Sequence[QueueRef], named: bool) -> Plan:
    """Resume: with `named`, each queue of `queues` that is paused (whoever paused it);
    otherwise (--all) exactly the queues the journal says this tool paused and nobody
    paused or resumed since; any other paused queue is noted and left paused."""
    notes: list[str] = []
    ledger = Ledger(ctx, "queues resume")
    client = ctx.client(decode=False)
    try:
        refuse_replica(client)
        states = {q.display: pause_state(client, q) for q in _v5_only(queues, named, notes)}
        ours = ledger.ours()
        decisions = {
            name: decide(name, state, name in ours, _touched(client, state, ours, named), named)
            for name, state in states.items()
        }
    finally:
        client.close()
    if not named:
        for name in sorted(set(ours) - set(states)):
            decisions[name] = decide(name, None, True, "", named)
    report = PauseReport("resume")
    steps: list[Step] = []
    for name, decision in decisions.items():
        if decision.note:
            notes.append(decision.note)
        if decision.left_alone:
            report.left_alone.append(name)
        if decision.action == "forget":
            steps.append(_forget_step(ledger, name, decision.note, report))
        elif decision.action == "resume":
            report.planned.append(name)
            steps.append(_resume_step(ctx, ledger, states[name].queue, report))
    if not report.planned:
        notes.append("no queue to resume")
    return Plan(
        procedure="queues resume",
        target=ctx.where,
        steps=steps,
        confirm=Confirm.YES_NO if report.planned else Confirm.NONE,
        notes=notes,
        extra=lambda: {"pause": report.to_json()},
        summary=report.summary,
    )


def _touched(client: redis.Redis, state: PauseState, ours: dict[str, str], named: bool) -> str:
    event_id = ours.get(state.queue.display, "")
    if named or not state.paused or not event_id:
        return ""
    return touched_since(client, state.queue, event_id)


def _forget_step(ledger: Ledger, name: str, why: str, report: PauseReport) -> Step:
    def run() -> str:
        ledger.write(name, "released", why)
        report.forgotten.append(name)
        return "no longer recorded as paused by redis-runbook"

    return Step(f"{name}: forget the pause (not ours any more)", run)


def resume_one(client: redis.Redis, ledger: Ledger, queue: QueueRef) -> tuple[bool, str]:
    """Resume the queue and journal it: (True, sentence) when resumed, (False,
    sentence) when someone resumed it meanwhile; StepFailed on a conflict."""
    name = queue.display
    result = set_paused(client, queue, pause=False)
    if result.outcome == "conflict":
        raise _conflict(result)
    if result.outcome == "unchanged":
        ledger.write(name, "released", "resumed by someone else meanwhile")
        return False, "resumed by someone else meanwhile"
    message = f"resumed; {result.paused_list} job(s) back in wait"
    ledger.write(name, "resumed", message, result.event_id)
    return True, message


def _resume_step(
    ctx: ProcedureContext, ledger: Ledger, queue: QueueRef, report: PauseReport
) -> Step:
    name = queue.display

    def run() -> str:
        client = ctx.client(decode=False)
        try:
            resumed, message = resume_one(client, ledger, queue)
        finally:
            client.close()
        (report.done if resumed else report.unchanged).append(name)
        return message + ("; workers take jobs again" if resumed else "")

    return Step(f"{name}: resume", run, on_failure=STATUS_HINT)
