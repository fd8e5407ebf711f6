"""Plan, then act (DESIGN.md rules 2-5).

A procedure builds a `Plan` from the target's current state: ordered `Step`s, each
marked destructive or not, each returning one sentence for the operator. The CLI
shows the plan; `--dry-run` stops there; otherwise `confirm()` applies the
confirmation the plan asks for, and `execute()` takes the lock, runs the steps in
order, journals every one, and stops at the first failure saying which step failed,
what state things are in, and what to run next. There is no other dry-run path.

The plan carries the policy too (whether it can lose data, whether the lock key is
taken on the target, its cleanup, its extra JSON) and, when it must prove it kept
what it should, a `Witness` whose record and compare become its first and last steps.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import redis

from redis_runbook.aside import observed
from redis_runbook.errors import EXIT_FAILED, Refused, RunbookError
from redis_runbook.inflight import InFlight, Leftover, running
from redis_runbook.journal import Journal
from redis_runbook.locks import file_lock, redis_lock
from redis_runbook.target import classify

DATA_LOSS_FLAG = "--i-understand-data-loss"


class StepFailed(RunbookError):
    """Raised by a step (or its check) that could not do what it says."""


class Confirm(StrEnum):
    """How much confirmation a plan needs (rule 3: scaled to the blast radius)."""

    NONE = "none"  # read-only or trivially safe
    YES_NO = "yes/no"  # routine: y/N
    TYPED = "typed"  # replaces data: type the exact word


@dataclass
class Step:
    """One action. `action` does it and returns one sentence; `check` (optional)
    verifies it and raises StepFailed; `on_failure` names the next command. A step
    marked `always` also runs when an earlier step failed (e.g. resuming the queues
    paused before the procedure); what it did is added to the failure's message."""

    title: str
    action: Callable[[], str]
    destructive: bool = False
    check: Callable[[], None] | None = None
    on_failure: str | None = None
    always: bool = False


class Witness(Protocol):
    """Evidence that a procedure kept what it must keep. A plan that declares one
    runs `record` as its first step, before anything changes, and `compare` as its
    last; both are journaled like any step, and `compare` raises StepFailed when the
    evidence says something was lost."""

    @property
    def recording(self) -> str:
        """The title of the first step."""
        ...

    @property
    def comparing(self) -> str:
        """The title of the last step."""
        ...

    def record(self) -> str:
        """Take the evidence before; one sentence."""
        ...

    def compare(self) -> str:
        """Take it again and compare; one sentence, or StepFailed."""
        ...


@dataclass
class Plan:
    """What a procedure will do, in order, before anything is done, and the policy
    the runner and the CLI apply to it (the CLI computes none of it)."""

    procedure: str
    target: str
    steps: list[Step]
    confirm: Confirm = Confirm.YES_NO
    confirm_word: str = "yes"
    notes: list[str] = field(default_factory=list)
    # What the plan already has on disk before its first step (e.g. restore's
    # staging dir); steps add their aside moves and copies as they run.
    leftovers: list[Leftover] = field(default_factory=list)
    # The command that finishes the procedure when it is interrupted.
    resume: str = ""
    # The steps can lose data that cannot be had back: `--yes` alone does not
    # answer the confirmation, `--i-understand-data-loss` must come with it.
    data_loss: bool = False
    # Also hold the lock key on the target. A failover does not: a key written to
    # the old master would be stranded on the new one after the switch.
    redis_lock: bool = True
    # Run once the plan is done with, whatever happened (dry run, refusal,
    # failure): e.g. restore removes its staging dir.
    cleanup: Callable[[], None] | None = None
    # More of the procedure's own JSON, merged into the dry-run and results documents.
    extra: Callable[[], dict[str, Any]] | None = None
    # The closing line once every step ran (default: "<procedure>: done, N steps").
    summary: Callable[[], str] | None = None
    # Recorded before the first step, compared after the last (the steps are added).
    witness: Witness | None = None

    def __post_init__(self) -> None:
        if self.witness is not None:
            w = self.witness
            self.steps = [Step(w.recording, w.record), *self.steps, Step(w.comparing, w.compare)]

    @property
    def destructive(self) -> bool:
        """True when any step is destructive."""
        return any(step.destructive for step in self.steps)

    def finish(self) -> None:
        """Run the plan's cleanup (once)."""
        cleanup, self.cleanup = self.cleanup, None
        if cleanup is not None:
            cleanup()


@dataclass(frozen=True)
class StepResult:
    """What one executed step said, and how long it took."""

    index: int
    title: str
    ok: bool
    message: str
    seconds: float


class ProcedureFailed(RunbookError):
    """A step failed; earlier steps are done, later ones were not run."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, hint: str, results: list[StepResult]) -> None:
        super().__init__(message, hint)
        self.results = results


def confirm(
    plan: Plan,
    *,
    yes: bool,
    interactive: bool,
    ask: Callable[[str], str],
    understood: bool = False,
) -> None:
    """Apply the plan's confirmation. `--yes` answers it (for a plan that can lose
    data only with `understood`, --i-understand-data-loss); without a TTY and
    without --yes refuse instead of hanging. Raises Refused; returns when confirmed."""
    if plan.confirm is Confirm.NONE:
        return
    if yes:
        if plan.data_loss and not understood:
            raise Refused(
                f"{plan.procedure} replaces data: --yes alone is not enough",
                f"add {DATA_LOSS_FLAG} after reading the plan (redis-runbook --dry-run ... "
                f"{plan.procedure}), or run it interactively and type {plan.confirm_word}",
            )
        return
    if not interactive:
        raise Refused(
            f"{plan.procedure} needs confirmation and there is no terminal to ask",
            f"re-run with --yes (after reading: redis-runbook --dry-run ... {plan.procedure})",
        )
    if plan.confirm is Confirm.TYPED:
        answer = ask(f"Type {plan.confirm_word} to continue")
        if answer.strip() != plan.confirm_word:
            raise Refused(f"{plan.procedure} cancelled: you did not type {plan.confirm_word}")
        return
    if ask("Continue? [y/N]").strip().lower() not in ("y", "yes"):
        raise Refused(f"{plan.procedure} cancelled")


@dataclass
class Runner:
    """Executes plans: lock, journal, steps in order, stop at the first failure."""

    journal: Journal
    lock_dir: Path
    lock_client: Callable[[], redis.Redis | None] = lambda: None
    lock_ttl_s: int = 3600
    on_step: Callable[[StepResult], None] = lambda _result: None
    # Where the in-flight record of a running plan lives (None: not kept).
    state_dir: Path | None = None

    @contextlib.contextmanager
    def _locked(self, plan: Plan) -> Iterator[None]:
        with file_lock(self.lock_dir, plan.target, plan.procedure):
            client = self.lock_client() if plan.redis_lock else None
            try:
                with redis_lock(client, plan.procedure, self.lock_ttl_s):
                    yield
            finally:
                if client is not None:
                    client.close()

    def execute(self, plan: Plan) -> list[StepResult]:
        """Run every step; raise ProcedureFailed at the first one that fails. Any
        exception inside a step is a step failure: journaled, with what was done
        and what is left on disk (an interrupted run is reported by the next
        command from the in-flight record)."""
        record = self._recorder(plan)
        results: list[StepResult] = []
        with self._locked(plan):
            flight = self._begin(plan)
            with observed(flight.left if flight else plan.leftovers.append), running(flight):
                record("plan", "started", f"{len(plan.steps)} steps", {"notes": plan.notes})
                for index, step in enumerate(plan.steps, 1):
                    if flight is not None:
                        flight.at(index)
                    try:
                        result = self._run_step(plan, index, step, results, flight)
                    except ProcedureFailed as failed:
                        raise self._after_failure(plan, index, failed, results) from None
                    results.append(result)
                    self.on_step(result)
                    record(
                        step.title, "done", result.message, {"seconds": round(result.seconds, 3)}
                    )
                record("plan", "finished", f"{len(results)} steps done")
            if flight is not None:
                flight.end()
        return results

    def _after_failure(
        self, plan: Plan, failed_at: int, failed: ProcedureFailed, results: list[StepResult]
    ) -> ProcedureFailed:
        """Run the `always` steps after the failed one, each journaled and reported;
        the failure, with what they did (or why they could not) added to its message."""
        said = []
        for index, step in enumerate(plan.steps[failed_at:], failed_at + 1):
            if not step.always:
                continue
            started = time.monotonic()
            then = ""
            try:
                message, ok = step.action(), True
            except BaseException as exc:  # reported, never hides the first failure
                error = _as_error(exc, plan.target)
                message, ok, then = error.message, False, step.on_failure or error.hint
            result = StepResult(index, step.title, ok, message, time.monotonic() - started)
            results.append(result)
            self.on_step(result)
            self._recorder(plan)(step.title, "done" if ok else "failed", message)
            outcome = "done" if ok else f"FAILED (then: {then})"
            said.append(f"{step.title}: {outcome}: {message}")
        if not said:
            return failed
        return ProcedureFailed(
            f"{failed.message} After the failure: {'; '.join(said)}.", failed.hint, results
        )

    def _begin(self, plan: Plan) -> InFlight | None:
        if self.state_dir is None:
            return None
        return InFlight.begin(
            self.state_dir,
            procedure=plan.procedure,
            target=plan.target,
            steps=[step.title for step in plan.steps],
            resume=plan.resume,
            leftovers=plan.leftovers,
        )

    def _run_step(
        self,
        plan: Plan,
        index: int,
        step: Step,
        results: list[StepResult],
        flight: InFlight | None,
    ) -> StepResult:
        started = time.monotonic()
        try:
            message = step.action()
            if step.check is not None:
                step.check()
        except BaseException as exc:  # every failure is a step failure (DESIGN rule 5)
            error = _as_error(exc, plan.target)
            result = StepResult(index, step.title, False, error.message, time.monotonic() - started)
            results.append(result)
            self.on_step(result)
            self._recorder(plan)(step.title, "failed", error.message)
            done = ", ".join(r.title for r in results if r.ok) or "nothing"
            left = flight.remaining() if flight is not None else plan.leftovers
            where = "".join(f" Left on disk: {item.path} ({item.what})." for item in left)
            if flight is not None:
                flight.end()
            raise ProcedureFailed(
                f"{plan.procedure}: step {index} ({step.title}) failed: {error.message}. "
                f"Done before it: {done}.{where}",
                step.on_failure or error.hint,
                results,
            ) from None
        return StepResult(index, step.title, True, message, time.monotonic() - started)

    def _recorder(self, plan: Plan) -> Callable[..., None]:
        def record(
            step: str, outcome: str, message: str = "", figures: dict[str, object] | None = None
        ) -> None:
            self.journal.record(
                target=plan.target,
                procedure=plan.procedure,
                step=step,
                outcome=outcome,
                message=message,
                figures=figures,
            )

        return record


def _as_error(exc: BaseException, target: str) -> RunbookError:
    """The RunbookError that describes why a step stopped."""
    if isinstance(exc, RunbookError):
        return exc
    if isinstance(exc, redis.RedisError):
        return classify(exc, target)
    if isinstance(exc, KeyboardInterrupt):
        return RunbookError("interrupted by the operator (Ctrl-C)", "redis-runbook diagnose")
    if isinstance(exc, OSError):
        name = f" {exc.filename}" if exc.filename else ""
        return RunbookError(
            f"{type(exc).__name__}{name}: {exc.strerror or exc}", "redis-runbook diagnose"
        )
    return RunbookError(f"{type(exc).__name__}: {exc}", "redis-runbook journal --tail 20")
