"""`redis-runbook backup create | list | verify`: backups of the data files (seed
§4.3) and the restore drill (seed §6.4). The live server is only asked to BGSAVE."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from redis_runbook.cli.context import globals_of
from redis_runbook.cli.procedure import procedure_context, run_plan
from redis_runbook.cli.render import STATUS_STYLE, err, out, print_json
from redis_runbook.status import Status
from redis_runbook.units import format_bytes

if TYPE_CHECKING:
    from redis_runbook.backup.verify import DrillReport

app = typer.Typer(
    help="Backups of the data files and the restore drill (seed §4.3, §6.4).",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="One JSON document.")]


@app.command("create")
def create(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """BGSAVE (or join one in progress), wait until it succeeded, then archive
    dump.rdb, the AOF directory, redis.conf and metadata.json (key counts, versions)."""
    from redis_runbook.backup import make_backend
    from redis_runbook.procedures.backup import plan_create

    options = globals_of(ctx)
    options.json = options.json or json_output
    pctx = procedure_context(ctx)
    backend = make_backend(pctx.config.backup)
    run_plan(ctx, pctx, plan_create(pctx, backend))


@app.command("list")
def list_archives(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """The archives in the repository, oldest first: time, size, Redis version, keys."""
    from redis_runbook.backup import make_backend

    options = globals_of(ctx)
    config = options.load().config
    backend = make_backend(config.backup)
    archives = backend.list()
    if json_output or options.json:
        print_json(
            {
                "repository": backend.location,
                "kind": config.backup.kind,
                "archives": [a.to_json() for a in archives],
            }
        )
        return
    from rich.table import Table

    table = Table(title=f"Backups in {backend.location}", title_justify="left")
    for name, justify in (
        ("archive", "left"),
        ("time (UTC)", "left"),
        ("age", "right"),
        ("size", "right"),
        ("redis", "left"),
        ("RDB", "right"),
        ("keys", "right"),
    ):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for archive in archives:
        row = archive.to_json()
        table.add_row(
            archive.name,
            archive.time.strftime("%Y-%m-%d %H:%M:%S"),
            f"{archive.age_hours():.1f} h",
            format_bytes(archive.size) if archive.size is not None else "-",
            str(row["redis_version"] or "-"),
            str(row["rdb_version"] or "-"),
            str(row["keys"] if row["keys"] is not None else "-"),
        )
    out.print(table)
    if not archives:
        err.print("no archives yet: redis-runbook backup create", markup=False)


def _show(report: DrillReport) -> None:
    from redis_runbook.backup.verify import DRILL_WORDS

    out.print(
        Text(f"Restore drill: {report.archive.name} ", style="bold")
        + Text(DRILL_WORDS[report.status].upper(), style=STATUS_STYLE[report.status])
    )
    for check in report.checks:
        out.print(
            Text(f"  {DRILL_WORDS[check.status]:<8}", style=STATUS_STYLE[check.status])
            + Text(f"{check.name}: {check.summary}")
        )
    if report.status is Status.CRITICAL:
        err.print(
            "HINT: this archive would not restore; use another one (redis-runbook backup list) "
            "and make a fresh backup: redis-runbook backup create",
            markup=False,
        )
    elif report.status is Status.WARNING:
        err.print("HINT: redis-runbook backup create", markup=False)


@app.command("verify")
def verify(
    ctx: typer.Context,
    archive: Annotated[
        str, typer.Option("--archive", help="Archive name, or `latest`.")
    ] = "latest",
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Seconds for the throwaway server to load.")
    ] = 120.0,
    json_output: JsonOption = False,
) -> None:
    """The restore drill: extract into a temp dir, redis-check-rdb, load the RDB into
    a throwaway redis-server (loopback, free port, AOF off), compare keys per category
    with the metadata, judge the age against the RPO. Exit 0 ok, 1 old, 2 failed."""
    from redis_runbook.backup import make_backend
    from redis_runbook.backup.verify import drill
    from redis_runbook.service import make_service

    options = globals_of(ctx)
    config = options.load().config
    backend = make_backend(config.backup)
    launcher = make_service(config).local_argv  # the Redis a restore would load into
    report = drill(backend, archive, config.categories, config.backup.rpo_hours, timeout, launcher)
    if json_output or options.json:
        print_json(report.to_json())
    else:
        _show(report)
    raise typer.Exit(report.exit_code)
