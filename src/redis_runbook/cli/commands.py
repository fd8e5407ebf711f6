"""The command line's table of contents: every command, the module it lives in, and
how to find the one a command line asks for. Standard library only: the entry point
reads it before it loads typer or any command."""

from __future__ import annotations

from collections.abc import Sequence

from redis_runbook import __version__

VERSION_LINE = f"redis-runbook {__version__}"

# name -> (module in redis_runbook.cli, attribute, kind); this is the --help order.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "health": ("health", "health", "command"),
    "diagnose": ("diagnose", "diagnose", "command"),
    "recover": ("recover", "app", "group"),
    "queues": ("queues", "app", "group"),
    "workers": ("workers", "app", "group"),
    "keys": ("keys", "app", "group"),
    "clients": ("clients", "app", "group"),
    "perf": ("perf", "app", "group"),
    "backup": ("backup", "app", "group"),
    "failover": ("failover", "failover", "command"),
    "monitor": ("monitor", "monitor", "command"),
    "exporter": ("exporter", "exporter", "command"),
    "checklist": ("checklist", "app", "group"),
    "alerts": ("alerts", "app", "group"),
    "journal": ("journal_cmd", "journal", "command"),
    "lab": ("lab", "app", "group"),
    "config": ("config_cmd", "app", "group"),
}
# Subcommands that live in a module of their own: group -> (name, module, function).
SUBCOMMANDS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "recover": (("oom", "recover_oom", "oom"),),
    "queues": (
        ("reconstruct", "reconstruct", "reconstruct"),
        ("pause", "queues_pause", "pause"),
        ("resume", "queues_pause", "resume"),
        ("failed", "failed", "failed"),
        ("retry-failed", "failed", "retry_failed"),
    ),
}
_OPTIONS_WITH_VALUE = ("--config", "-c")


def requested_command(argv: Sequence[str]) -> str | None:
    """The command word in `argv` (skipping global options and their values)."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _OPTIONS_WITH_VALUE:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None
