"""Global CLI options, shared by every command module."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from redis_runbook.config import LoadedConfig, load_config


@dataclass
class Globals:
    """Options given before the command (`redis-runbook --json health`)."""

    config_path: Path | None = None
    json: bool = False
    yes: bool = False
    dry_run: bool = False
    verbose: bool = False

    def load(self) -> LoadedConfig:
        """The validated configuration (raises ConfigError)."""
        return load_config(self.config_path)


def globals_of(ctx: typer.Context) -> Globals:
    """The Globals of the root command (a fresh default when called in isolation)."""
    root = ctx.find_root()
    if not isinstance(root.obj, Globals):
        root.obj = Globals()
    return root.obj
