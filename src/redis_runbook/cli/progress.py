"""Progress of long keyspace walks (rule 7). On a terminal: bars drawn on the same
console as the step results (so those print above the bars, not through them),
started lazily on the first report, so a confirmation prompt asked before any walk
is never overdrawn. Without a terminal (cron, a pipe, a log): plain lines on
stderr — a walk's first report at once, then at most one line every `interval`
seconds, and its last state when it ends — so a long walk is never silent."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from redis_runbook.cli.render import err, out

if TYPE_CHECKING:
    from rich.progress import TaskID

    from redis_runbook.procedures.purge import LabelledProgress

LINE_INTERVAL = 5.0  # seconds between two progress lines of one walk without a terminal


@dataclass
class _Walk:
    started: float
    printed_at: float
    printed: tuple[int, int | None]
    last: tuple[int, int | None]


@dataclass
class ProgressLines:
    """`progress: <label>: <done> of <total> (<pct> %), <elapsed> s` lines on stderr."""

    interval: float = LINE_INTERVAL
    walks: dict[str, _Walk] = field(default_factory=dict)

    def _print(self, label: str, walk: _Walk, now: float) -> None:
        done, total = walk.last
        if total:
            figures = f"{done:,} of {total:,} ({done * 100 // total} %)"
        else:
            figures = f"{done:,} so far"
        err.print(
            f"progress: {label}: {figures}, {now - walk.started:.1f} s",
            markup=False,
            highlight=False,
        )
        walk.printed_at, walk.printed = now, walk.last

    def update(self, label: str, done: int, total: int | None) -> None:
        """One report of a walk (a LabelledProgress)."""
        now = time.monotonic()
        walk = self.walks.get(label)
        if walk is None:
            walk = self.walks[label] = _Walk(now, now, (done, total), (done, total))
            self._print(label, walk, now)
            return
        walk.last = (done, total)
        finished = total is not None and done >= total and walk.printed != walk.last
        if finished or now - walk.printed_at >= self.interval:
            self._print(label, walk, now)

    def flush(self) -> None:
        """The last state of every walk not printed yet (walks without a total)."""
        now = time.monotonic()
        for label, walk in self.walks.items():
            if walk.printed != walk.last:
                self._print(label, walk, now)


@contextlib.contextmanager
def walk_progress(
    enabled: bool = True, interval: float = LINE_INTERVAL
) -> Iterator[LabelledProgress | None]:
    """A LabelledProgress callback: one bar per label on a terminal, lines on
    stderr without one (None when `enabled` is False, e.g. for --json). The bars
    vanish when the block ends; the lines end with each walk's last state."""
    if not enabled:
        yield None
        return
    if not out.is_terminal:
        lines = ProgressLines(interval)
        try:
            yield lines.update
        finally:
            lines.flush()
        return
    # Only on a terminal: rich.progress loads Rich's tables, a slow import.
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out,
        transient=True,
    )
    tasks: dict[str, TaskID] = {}

    def update(label: str, done: int, total: int | None) -> None:
        if not tasks:
            bars.start()
        if label not in tasks:
            tasks[label] = bars.add_task(label, total=total)
        bars.update(tasks[label], completed=done, total=total)

    try:
        yield update
    finally:
        if tasks:
            bars.stop()
