"""`redis-runbook clients list | kill` (seed §3.3): who is connected, who is
blocked, and disconnecting one client as a plan."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from redis_runbook.cli.context import globals_of
from redis_runbook.cli.procedure import procedure_context, run_plan
from redis_runbook.cli.render import out, print_json
from redis_runbook.errors import ConfigError
from redis_runbook.units import format_bytes, format_duration

if TYPE_CHECKING:
    from rich.table import Table

    from redis_runbook.procedures.clients import ClientInfo

app = typer.Typer(help="Connected clients: list, kill (seed §3.3).", no_args_is_help=True)


def clients_table(clients: list[ClientInfo], target: str, filters: str) -> Table:
    """One row per client."""
    from rich.table import Table

    table = Table(title=f"Clients of {target}{filters}", title_justify="left")
    for name in ("id", "addr", "name", "age", "idle", "flags", "cmd", "db", "omem"):
        table.add_column(name, no_wrap=True)
    for c in clients:
        table.add_row(
            str(c.id),
            c.addr,
            Text(c.name),  # a client name is data, not Rich markup
            format_duration(c.age),
            format_duration(c.idle),
            c.flags,
            c.cmd,
            str(c.db),
            format_bytes(c.omem),
        )
    table.caption = f"{len(clients)} client(s); kill one: redis-runbook clients kill --id N"
    table.caption_justify = "left"
    return table


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    blocked: Annotated[
        bool, typer.Option("--blocked", help="Only clients blocked in BLPOP, BZPOPMIN, ...")
    ] = False,
    idle_over: Annotated[
        float | None,
        typer.Option("--idle-over", min=0, help="Only clients idle longer than S seconds."),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """CLIENT LIST, parsed: id, addr, name, age, idle, flags, cmd, db, omem. Read-only."""
    from redis_runbook.procedures.clients import list_clients

    options = globals_of(ctx)
    pctx = procedure_context(ctx, read_only=True)
    clients = list_clients(pctx, blocked=blocked, idle_over=idle_over)
    if json_output or options.json:
        print_json(
            {
                "target": pctx.where,
                "filters": {"blocked": blocked, "idle_over": idle_over},
                "count": len(clients),
                "clients": [c.to_json() for c in clients],
            }
        )
        return
    filters = (" (blocked)" if blocked else "") + (
        f" (idle > {idle_over:g} s)" if idle_over is not None else ""
    )
    out.print(clients_table(clients, pctx.where, filters))


@app.command("kill")
def kill(
    ctx: typer.Context,
    client_id: Annotated[
        int | None, typer.Option("--id", help="The client id (from clients list).")
    ] = None,
) -> None:
    """Disconnect one client (CLIENT KILL ID): plan, --dry-run, y/N, journal.
    Refuses the tool's own connections; an id that is not connected changes nothing."""
    if client_id is None or client_id < 1:
        raise ConfigError(
            "clients kill needs --id N (a positive client id)"
            + ("" if client_id is None else f", got {client_id}"),
            "redis-runbook clients list   # the ids",
        )
    from redis_runbook.procedures.clients import plan_kill

    pctx = procedure_context(ctx)
    run_plan(ctx, pctx, plan_kill(pctx, client_id))
