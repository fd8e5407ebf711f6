"""`redis-runbook alerts rules` (seed §6.3): the Prometheus alerting rules, with the
thresholds of the config, on stdout or written atomically to a file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from redis_runbook.cli.context import globals_of
from redis_runbook.cli.render import out, print_json

if TYPE_CHECKING:
    from redis_runbook.monitoring.rules import RuleGroup

app = typer.Typer(help="Prometheus alerting rules (seed §6.3).", no_args_is_help=True)


@app.command("rules")
def rules(
    ctx: typer.Context,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the rules file here (default: stdout)."),
    ] = None,
    replication: Annotated[
        bool,
        typer.Option(
            "--replication",
            help="Add the redis-replication group (automatic with [target.sentinel] or "
            "[target] replicas).",
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace a file this command did not write (moved aside)."),
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Prometheus alerting rules (promtool-valid) with the thresholds of [thresholds]
    and [backup] rpo_hours. A file that this command did not generate is not
    overwritten without --force, which moves it aside first."""
    from redis_runbook.monitoring.rules import build_rules, render_rules_yaml, write_rules_file

    options = globals_of(ctx)
    as_json = json_output or options.json
    config = options.load().config
    replicated = replication or config.target.sentinel is not None or bool(config.target.replicas)
    sentinel = config.target.sentinel is not None
    groups = build_rules(config, replication=replicated, sentinel=sentinel)
    text = render_rules_yaml(groups)
    count = sum(len(g.rules) for g in groups)
    if output is not None and options.dry_run:
        _dry_run(output, groups, count, force=force, as_json=as_json)
        return
    aside = write_rules_file(output, text, force=force) if output is not None else None
    if as_json:
        document: dict[str, object] = {"groups": [g.to_json() for g in groups]}
        if output is not None:
            document["output"] = str(output)
            document["moved_aside"] = str(aside) if aside else None
        print_json(document)
        return
    if output is None:
        sys.stdout.write(text)
        return
    if aside is not None:
        out.print(f"moved the old {output} aside to {aside}", markup=False, soft_wrap=True)
    out.print(
        f"wrote {count} alerts in {len(groups)} groups to {output}; "
        f"check it with: promtool check rules {output}",
        markup=False,
        soft_wrap=True,
    )


def _dry_run(
    output: Path, groups: list[RuleGroup], count: int, *, force: bool, as_json: bool
) -> None:
    """--dry-run with -o FILE: the same checks as the write (a refusal is still one),
    then what would be written where; the file and its directory are left alone."""
    from redis_runbook.monitoring.rules import check_rules_file

    foreign = check_rules_file(output, force=force)
    if as_json:
        print_json(
            {
                "dry_run": True,
                "groups": [g.to_json() for g in groups],
                "output": str(output),
                "moved_aside": None,
                "would_move_aside": foreign,
            }
        )
        return
    if foreign:
        out.print(
            f"would move the old {output} aside to {output.name}.<UTC stamp>.replaced",
            markup=False,
            soft_wrap=True,
        )
    verb = "replace" if output.exists() and not foreign else "write"
    out.print(
        f"would {verb} {count} alerts in {len(groups)} groups to {output} "
        "(dry run: nothing written)",
        markup=False,
        soft_wrap=True,
    )
