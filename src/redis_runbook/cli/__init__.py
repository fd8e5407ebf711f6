"""The `redis-runbook` command line: global options, command groups, and the one
place where errors become a message, a HINT line and an exit code."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from redis_runbook import __version__
from redis_runbook.cli.context import Globals
from redis_runbook.cli.render import print_error
from redis_runbook.errors import RunbookError

app = typer.Typer(
    name="redis-runbook",
    help="The executable runbook for Redis and BullMQ.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"redis-runbook {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Config file (default: $REDIS_RUNBOOK_CONFIG, "
            "./redis-runbook.toml, /etc/redis-runbook/redis-runbook.toml).",
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON document on stdout.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Answer confirmations (automation).")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan, change nothing.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="More detail.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """The executable runbook for Redis and BullMQ (seed runbook §1-§6)."""
    ctx.obj = Globals(config, json_output, yes, dry_run, verbose)


# Command modules are imported only when their command runs (the rest of the CLI
# would add imports such as psycopg and bullmq to every `health` in cron).
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
    "queues": (("reconstruct", "reconstruct", "reconstruct"),),
}
_OPTIONS_WITH_VALUE = ("--config", "-c")


def _attribute(module: str, name: str) -> Any:
    return getattr(importlib.import_module(f"redis_runbook.cli.{module}"), name)


def register(names: Iterable[str]) -> None:
    """Import and add the named commands to `app`."""
    for name in names:
        module, attribute, kind = COMMANDS[name]
        target = _attribute(module, attribute)
        if kind == "command":
            app.command(name)(target)
            continue
        for sub, sub_module, function in SUBCOMMANDS.get(name, ()):
            target.command(sub)(_attribute(sub_module, function))
        app.add_typer(target, name=name)


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


def main() -> None:
    """Console-script entry point."""
    name = requested_command(sys.argv[1:])
    register([name] if name in COMMANDS else COMMANDS)
    try:
        app(prog_name="redis-runbook")
    except RunbookError as error:
        print_error(error)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
