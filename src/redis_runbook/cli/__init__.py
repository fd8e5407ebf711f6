"""The `redis-runbook` command line. The entry point loads nothing but the standard
library until it knows what was asked: `--version` alone is answered at once, and only
the command that runs is imported (cli/commands.py names them all; cli/app.py holds the
typer app, the global options and the one place where errors become a message, a HINT
line and an exit code)."""

from __future__ import annotations

import sys

from redis_runbook.cli.commands import VERSION_LINE


def main() -> None:
    """Console-script entry point. `redis-runbook --version` alone is answered before
    typer loads (a version probe should not pay for the CLI); any other command line,
    `--version` among other options included, goes to the typer app."""
    argv = sys.argv[1:]
    if argv == ["--version"]:
        sys.stdout.write(VERSION_LINE + "\n")
        return
    from redis_runbook.cli.app import run

    run(argv)
