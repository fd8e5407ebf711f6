"""Progress bars for long keyspace walks (rule 7), only when stdout is a
terminal; drawn on the same console as the step results (so those print above
the bars, not through them) and started lazily on the first report, so a
confirmation prompt asked before any walk is never overdrawn."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from redis_runbook.cli.render import out
from redis_runbook.procedures.purge import LabelledProgress


@contextlib.contextmanager
def walk_progress(enabled: bool = True) -> Iterator[LabelledProgress | None]:
    """A LabelledProgress callback drawing one bar per label (None when stdout is
    not a terminal or `enabled` is False); the bars vanish when the block ends."""
    if not enabled or not out.is_terminal:
        yield None
        return
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
