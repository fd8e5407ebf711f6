"""The typer app: global options, the command groups it is given, and the one place
where errors become a message, a HINT line and an exit code."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from redis_runbook.cli.commands import COMMANDS, SUBCOMMANDS, VERSION_LINE, requested_command
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
        typer.echo(VERSION_LINE)
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


def _attribute(module: str, name: str) -> Any:
    return getattr(importlib.import_module(f"redis_runbook.cli.{module}"), name)


def register(names: Iterable[str]) -> None:
    """Import and add the named commands (keys of COMMANDS) to `app`. Command modules
    are imported only when their command runs (the rest of the CLI would add imports
    such as psycopg and bullmq to every `health` in cron); each one imports the library
    inside its commands, so building them for --help loads neither redis nor pydantic."""
    for name in names:
        module, attribute, kind = COMMANDS[name]
        target = _attribute(module, attribute)
        if kind == "command":
            app.command(name)(target)
            continue
        for sub, sub_module, function in SUBCOMMANDS.get(name, ()):
            target.command(sub)(_attribute(sub_module, function))
        app.add_typer(target, name=name)


def run(argv: Sequence[str]) -> None:
    """Run the command line `argv` (without the program name): register the command
    it names (every command when it names none, for --help), then let typer parse it."""
    name = requested_command(argv)
    register([name] if name in COMMANDS else COMMANDS)
    try:
        app(args=list(argv), prog_name="redis-runbook")
    except RunbookError as error:
        print_error(error)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
