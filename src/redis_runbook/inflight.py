"""Procedures that never finished (DESIGN.md rule 5, the journal as the timeline).

While a plan runs, the runner keeps a small record in `<state_dir>/inflight/<pid>.json`:
the procedure, the step it is at, and what it has left on disk so far (the data moved
or copied aside, a staging dir). A plan that ends — done or failed — removes it. A
record whose process is gone (SIGKILL, power loss, OOM killer) is found by the next
command, which reports it once: the journal gets an `interrupted` line and the CLI
prints which procedure, which step, what is on disk and the command that finishes or
undoes it. A step that holds a setting of the server changed for a moment (`holding`:
`save ""` during a stop) has the command that puts it back in the record meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from redis_runbook.journal import Journal

INFLIGHT_DIR = "inflight"


@dataclass(frozen=True)
class Leftover:
    """Something a procedure put on disk that outlives it: `path` exists until the
    operator decides, `what` says what it is, `advice` what to do with it (how to
    put it back, or that it is safe to remove)."""

    path: str
    what: str
    advice: str = ""


def process_start(pid: int) -> str | None:
    """The kernel's start time of `pid` (field 22 of /proc/<pid>/stat): with the pid,
    it names one process, so a reused pid is not mistaken for the original."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def alive(pid: int, started: str | None) -> bool:
    """True when the process that wrote a record still runs."""
    return started is not None and process_start(pid) == started


@dataclass
class InFlight:
    """The record of one running plan; `save()` after every change."""

    path: Path
    procedure: str
    target: str
    steps: list[str]
    resume: str = ""
    step: int = 0
    leftovers: list[Leftover] = field(default_factory=list)
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)
    started: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    # What a step holds changed on the server right now: how to put each back.
    held: list[str] = field(default_factory=list)

    @classmethod
    def begin(
        cls,
        state_dir: Path,
        *,
        procedure: str,
        target: str,
        steps: list[str],
        resume: str,
        leftovers: list[Leftover],
    ) -> InFlight:
        """Write the record of a plan that starts now."""
        record = cls(
            state_dir / INFLIGHT_DIR / f"{os.getpid()}.json",
            procedure,
            target,
            steps,
            resume,
            leftovers=list(leftovers),
        )
        record.save()
        return record

    def at(self, step: int) -> None:
        """The plan has started step `step` (1-based)."""
        self.step = step
        self.save()

    def left(self, leftover: Leftover) -> None:
        """The plan has put `leftover` on disk."""
        self.leftovers.append(leftover)
        self.save()

    def hold(self, undo: str) -> None:
        """A step holds a setting changed; `undo` says how to put it back."""
        self.held.append(undo)
        self.save()

    def release(self, undo: str) -> None:
        """The setting held with `undo` is back (or the server that held it is gone)."""
        self.held.remove(undo)
        self.save()

    def remaining(self) -> list[Leftover]:
        """The leftovers that are still on disk."""
        return [item for item in self.leftovers if Path(item.path).exists()]

    def save(self) -> None:
        """Write the record atomically (a crash leaves the old or the new one)."""
        document = {
            "procedure": self.procedure,
            "target": self.target,
            "steps": self.steps,
            "step": self.step,
            "resume": self.resume,
            "leftovers": [asdict(item) for item in self.leftovers],
            "held": self.held,
            "pid": self.pid,
            "process_start": process_start(self.pid),
            "host": self.host,
            "started": self.started,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".tmp")
        partial.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
        partial.replace(self.path)

    def end(self) -> None:
        """The plan ended (done, or failed and reported): forget the record."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def describe(self) -> list[str]:
        """What an operator needs to know about this interrupted plan, line by line."""
        where = (
            f"step {self.step} of {len(self.steps)} ({self.steps[self.step - 1]})"
            if 0 < self.step <= len(self.steps)
            else "before its first step"
        )
        lines = [
            f"{self.procedure} on {self.target} (pid {self.pid}, started {self.started}) "
            f"never finished: it stopped at {where}"
        ]
        remaining = self.remaining()
        for item in remaining:
            lines.append(f"left on disk: {item.path}: {item.what}")
            if item.advice:
                lines.append(f"  {item.advice}")
        if not remaining:
            lines.append("nothing it created is left on disk")
        lines += [f"left on the server: {undo}" for undo in self.held]
        resume = self.resume or (
            f"redis-runbook diagnose; then, if it is still needed: redis-runbook {self.procedure}"
        )
        lines.append(f"to finish it: {resume}")
        return lines


# The record of the plan this process runs (the runner installs it), told by
# `holding` of a setting a step holds changed on the server.
_running: list[InFlight] = []


@contextlib.contextmanager
def running(record: InFlight | None) -> Iterator[None]:
    """`holding` in this block is written to `record` (None: kept nowhere)."""
    if record is None:
        yield
        return
    _running.append(record)
    try:
        yield
    finally:
        _running.remove(record)


@contextlib.contextmanager
def holding(undo: str) -> Iterator[None]:
    """A setting of the server changed for the length of this block, which stays
    changed if this process is killed inside it: from before the change until the
    block ends, the running plan's record carries `undo` (the sentence with the
    command that puts it back), so the next command tells the operator."""
    records = list(_running)
    for record in records:
        record.hold(undo)
    try:
        yield
    finally:
        for record in records:
            record.release(undo)


def _load(path: Path) -> InFlight | None:
    try:
        document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        record = InFlight(
            path,
            str(document["procedure"]),
            str(document["target"]),
            [str(s) for s in document.get("steps", [])],
            str(document.get("resume", "")),
            int(document.get("step", 0)),
            [Leftover(**item) for item in document.get("leftovers", [])],
            int(document["pid"]),
            str(document.get("host", "")),
            str(document.get("started", "?")),
            [str(undo) for undo in document.get("held", [])],
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if record.host != socket.gethostname() or alive(record.pid, document.get("process_start")):
        return None  # still running, or another host's: not ours to judge
    return record


def take_interrupted(state_dir: Path) -> list[InFlight]:
    """The plans whose process died before they ended, each reported once: the
    journal records it as `interrupted` and the record is removed."""
    directory = state_dir / INFLIGHT_DIR
    try:
        paths = sorted(directory.glob("*.json"))
    except OSError:
        return []
    found: list[InFlight] = []
    for path in paths:
        record = _load(path)
        if record is None:
            continue
        Journal.in_dir(state_dir).record(
            target=record.target,
            procedure=record.procedure,
            step=record.steps[record.step - 1] if 0 < record.step <= len(record.steps) else "plan",
            outcome="interrupted",
            message="; ".join(record.describe()),
            figures={"pid": record.pid, "step": record.step},
        )
        record.end()
        found.append(record)
    return found
