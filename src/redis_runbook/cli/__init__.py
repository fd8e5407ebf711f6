"""The `redis-runbook` command line: global options, command groups, and the one
place where errors become a message, a HINT line and an exit code."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from redis_runbook import __version__
from redis_runbook.cli import (
    backup,
    clients,
    config_cmd,
    diagnose,
    health,
    journal_cmd,
    keys,
    lab,
    perf,
    queues,
    reconstruct,
    recover,
    recover_oom,
    workers,
)
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


app.command("health")(health.health)
app.command("diagnose")(diagnose.diagnose)
app.add_typer(config_cmd.app, name="config")
app.add_typer(lab.app, name="lab")
app.add_typer(recover.app, name="recover")
app.add_typer(queues.app, name="queues")
app.add_typer(workers.app, name="workers")
queues.app.command("reconstruct")(reconstruct.reconstruct)
app.command("journal")(journal_cmd.journal)
app.add_typer(keys.app, name="keys")
recover.app.command("oom")(recover_oom.oom)
app.add_typer(clients.app, name="clients")
app.add_typer(perf.app, name="perf")
app.add_typer(backup.app, name="backup")


def main() -> None:
    """Console-script entry point."""
    try:
        app(prog_name="redis-runbook")
    except RunbookError as error:
        print_error(error)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
