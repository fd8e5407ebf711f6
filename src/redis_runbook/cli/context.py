"""Global CLI options, shared by every command module."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from redis_runbook.cli import render

if TYPE_CHECKING:
    from redis_runbook.config import LoadedConfig


@dataclass
class Globals:
    """Options given before the command (`redis-runbook --json health`)."""

    config_path: Path | None = None
    json: bool = False
    yes: bool = False
    dry_run: bool = False
    verbose: bool = False

    def load(self) -> LoadedConfig:
        """The validated configuration (raises ConfigError). A procedure on this
        state dir that was killed before it ended is reported here, once."""
        from redis_runbook.config import load_config

        loaded = load_config(self.config_path)
        report_interrupted(loaded.config.runbook.state_dir)
        return loaded


def report_interrupted(state_dir: Path) -> None:
    """Warn on stderr about every plan whose process died before it ended."""
    from redis_runbook.inflight import take_interrupted

    for record in take_interrupted(state_dir):
        lines = record.describe()
        render.err.print(f"WARNING: {lines[0]}", style="bold yellow", markup=False)
        for line in lines[1:]:
            render.err.print(f"  {line}", markup=False)


def globals_of(ctx: typer.Context) -> Globals:
    """The Globals of the root command (a fresh default when called in isolation)."""
    root = ctx.find_root()
    if not isinstance(root.obj, Globals):
        root.obj = Globals()
    return root.obj
