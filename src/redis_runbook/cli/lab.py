"""`redis-runbook lab up | down | status | seed | demo | break`: the sandbox Redis."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from redis_runbook.cli.context import globals_of
from redis_runbook.cli.render import health_table, out, print_json
from redis_runbook.errors import LabError
from redis_runbook.fault_catalogue import FAULT_CATALOGUE
from redis_runbook.units import parse_size

if TYPE_CHECKING:
    from redis_runbook.lab import LabStatus
    from redis_runbook.lab.sentinel_lab import TopologyStatus
    from redis_runbook.lab.server import RedisServer

app = typer.Typer(help="A sandbox Redis configured like production.", no_args_is_help=True)

DirOption = Annotated[
    Path | None,
    typer.Option("--dir", help="Lab state directory (default: $XDG_STATE_HOME/redis-runbook/lab)."),
]


def _show_status(ctx: typer.Context, status: LabStatus, verb: str) -> None:
    if globals_of(ctx).json:
        print_json(status.to_json())
        return
    if status.running:
        out.print(f"lab {verb}: redis-server pid {status.pid} on {status.url}", markup=False)
    else:
        out.print(f"lab {verb}: not running (state in {status.dir})", markup=False)
    out.print(f"config: {status.config_path}", markup=False)
    if status.running:
        out.print(f"use it: export REDIS_RUNBOOK_CONFIG={status.config_path}", markup=False)


def _show_topology(ctx: typer.Context, status: TopologyStatus, verb: str) -> None:
    if globals_of(ctx).json:
        print_json(status.to_json())
        return
    running = sum(n.running for n in (*status.servers, *status.sentinels))
    total = len(status.servers) + len(status.sentinels)
    if status.running or running == 0:
        state = "running" if status.running else "stopped"
    else:
        state = f"{running} of {total} processes running"
    line = f"lab {verb}: Sentinel mode, {state}; service {status.service}"
    if status.master or any(n.running for n in status.sentinels):
        line += f", master {status.master or 'unknown (no Sentinel answered)'}"
    out.print(line, markup=False)
    for node in (*status.servers, *status.sentinels):
        what = f"pid {node.pid}" if node.running else "not running"
        role = f" {node.role}" if node.role else ""
        out.print(f"  {node.name:<11} 127.0.0.1:{node.port}  {what}{role}", markup=False)
    out.print(f"config: {status.config_path}", markup=False)
    if status.running:
        out.print(f"use it: export REDIS_RUNBOOK_CONFIG={status.config_path}", markup=False)


def _single_server_lab(state: Path, command: str) -> None:
    """Refuse a single-server lab command in a directory that holds a Sentinel lab."""
    from redis_runbook.lab.sentinel_lab import has_topology

    if has_topology(state):
        raise LabError(
            f"{state} holds a Sentinel lab; `lab {command}` needs a single-server lab",
            f"redis-runbook lab status --dir {state}, or use another --dir",
        )


def _size(value: str) -> str:
    try:
        parse_size(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


@app.command("up")
def up(
    ctx: typer.Context,
    directory: DirOption = None,
    maxmemory: Annotated[
        str, typer.Option(callback=_size, help="maxmemory of the lab server.")
    ] = "64mb",
    with_postgres: Annotated[
        bool,
        typer.Option(
            "--with-postgres",
            help="Also a PostgreSQL with the seed's example tables, for queues reconstruct.",
        ),
    ] = False,
    sentinel: Annotated[
        bool,
        typer.Option(
            "--sentinel",
            help="1 master, 2 replicas, 3 Sentinels on loopback to rehearse a failover.",
        ),
    ] = False,
) -> None:
    """Start the lab Redis on a free loopback port (AOF everysec, noeviction) and
    write a config file pointing redis-runbook at it. Idempotent."""
    from redis_runbook import lab
    from redis_runbook.lab.lifecycle import has_postgres
    from redis_runbook.lab.sentinel_lab import up_topology

    state = lab.state_dir(directory)
    status: LabStatus | TopologyStatus
    if sentinel:
        status = up_topology(state)
    else:
        _single_server_lab(state, "up")
        status = lab.up(state, maxmemory)
    # A lab that has a PostgreSQL keeps it: started with the rest, [reconstruct] kept.
    if not (with_postgres or has_postgres(state)):
        _show_any(ctx, status, "up")
        return
    from redis_runbook.lab import pglab  # psycopg only when asked for: a slow import

    postgres = pglab.up(state)
    if globals_of(ctx).json:
        print_json({**status.to_json(), "postgres": postgres.to_json()})
        return
    _show_any(ctx, status, "up")
    out.print(
        f"postgres: pid {postgres.pid} on {postgres.display} (DSN in {postgres.dsn_file}, "
        "mode 0600); [reconstruct] in the config",
        markup=False,
    )


def _show_any(ctx: typer.Context, status: LabStatus | TopologyStatus, verb: str) -> None:
    from redis_runbook.lab.sentinel_lab import TopologyStatus

    if isinstance(status, TopologyStatus):
        _show_topology(ctx, status, verb)
    else:
        _show_status(ctx, status, verb)


@app.command("down")
def down(ctx: typer.Context, directory: DirOption = None) -> None:
    """Stop the lab Redis gracefully (SHUTDOWN SAVE); a Sentinel lab: its Sentinels
    (SIGTERM), then every redis-server. Data stays in the state dir."""
    from redis_runbook import lab
    from redis_runbook.lab.sentinel_lab import down_topology, has_topology

    state = lab.state_dir(directory)
    if not has_topology(state):
        _show_down(ctx, lab.status(state).pid, lab.down(state))
        return
    stopped = down_topology(state)
    from redis_runbook.lab import pglab  # psycopg only when needed

    pglab.down(state)
    _show_topology(ctx, stopped, "down")


def _show_down(ctx: typer.Context, was_pid: int | None, stopped: LabStatus) -> None:
    """What `lab down` did: the pid it stopped, or that there was nothing to stop."""
    if globals_of(ctx).json:
        print_json({**stopped.to_json(), "stopped_pid": was_pid})
        return
    if stopped.running:  # stop() raises when it cannot stop it; a new one started meanwhile
        _show_status(ctx, stopped, "down")
        return
    if was_pid is not None:
        out.print(
            f"lab down: stopped redis-server pid {was_pid} (SHUTDOWN SAVE); data kept in "
            f"{stopped.dir}",
            markup=False,
        )
    else:
        out.print(f"lab down: was not running (state in {stopped.dir})", markup=False)
    out.print(f"start it again: redis-runbook lab up --dir {stopped.dir}", markup=False)


@app.command("status")
def status(ctx: typer.Context, directory: DirOption = None) -> None:
    """Is the lab running, and where (a Sentinel lab: every process and the master a
    Sentinel names). Exit 0 running, 1 not running."""
    from redis_runbook import lab
    from redis_runbook.lab.sentinel_lab import has_topology, topology_status

    state = lab.state_dir(directory)
    current: LabStatus | TopologyStatus
    current = topology_status(state) if has_topology(state) else lab.status(state)
    _show_any(ctx, current, "status")
    raise typer.Exit(0 if current.running else 1)


@app.command("seed")
def seed_cmd(
    ctx: typer.Context,
    directory: DirOption = None,
    scale: Annotated[int, typer.Option(min=1, max=1000, help="Multiply every count.")] = 1,
    force: Annotated[bool, typer.Option("--force", help="Seed a non-empty lab anyway.")] = False,
) -> None:
    """Fill the lab with BullMQ queues in every job state (via the official Python
    bullmq 2.x) plus session:*, ratelimit:* and cache:* keys."""
    from redis_runbook import lab
    from redis_runbook.config import load_config
    from redis_runbook.lab.seed import SeedPlan, seed

    _single_server_lab(lab.state_dir(directory), "seed")
    current = lab.status(lab.state_dir(directory))
    if not current.running:
        raise lab_not_running(current)
    target = load_config(current.config_path, env={}).config.target
    report = seed(target, SeedPlan(scale), force=force)
    if globals_of(ctx).json:
        print_json({"queues": report.queues, "keys": report.keys, "seconds": report.seconds})
        return
    for queue, states in report.queues.items():
        text = ", ".join(f"{n} {state}" for state, n in states.items())
        out.print(f"queue {queue}: {text}", markup=False)
    keys = ", ".join(f"{n} {category}:*" for category, n in report.keys.items())
    out.print(f"keys: {keys}", markup=False)
    out.print(f"seeded in {report.seconds:.1f} s", markup=False)


def lab_not_running(current: LabStatus) -> LabError:
    """The error for a lab command that needs a running lab."""
    return LabError(f"the lab in {current.dir} is not running", "redis-runbook lab up")


@app.command("demo")
def demo(ctx: typer.Context, directory: DirOption = None) -> None:
    """What `./run demo` runs: lab up, seed (if empty), health, what to try next."""
    from redis_runbook import lab
    from redis_runbook.checks import run_health
    from redis_runbook.config import load_config
    from redis_runbook.lab.seed import SeedPlan, seed

    state = lab.state_dir(directory)
    _single_server_lab(state, "demo")
    current = lab.up(state)
    out.print(f"lab up: redis-server pid {current.pid} on {current.url}", markup=False)
    target = load_config(current.config_path, env={}).config.target
    try:
        report = seed(target, SeedPlan())
        out.print(
            f"lab seeded in {report.seconds:.1f} s: "
            + ", ".join(report.queues)
            + " + session/ratelimit/cache keys",
            markup=False,
        )
    except LabError as exc:  # already seeded: keep going, the health report shows it
        out.print(f"seed skipped: {exc}", markup=False)
    config = load_config(current.config_path, env={}).config
    out.print(health_table(run_health(config)))
    cfg = current.config_path
    out.print(
        "\nWhat to try next:\n"
        f"  export REDIS_RUNBOOK_CONFIG={cfg}\n"
        "  ./run health                     the report above again (--json, --watch 2)\n"
        "  ./run queues status              BullMQ queues; some active jobs lost their worker\n"
        "  ./run queues recover-stale       move those back: plan, confirmation, journal\n"
        "  ./run lab break aof-truncate     rehearse a crash that cut the AOF, then:\n"
        "  ./run diagnose                   the scenario, its evidence, the next command\n"
        "  ./run recover aof                repair it (the AOF is copied aside first)\n"
        "  ./run journal                    what every procedure did\n"
        "  ./run lab down                   stop the lab (SHUTDOWN SAVE); data is kept\n"
        + (f"  (add --dir {state} to the lab commands)\n" if directory else ""),
        markup=False,
    )


BREAK_HELP = (
    "Inject a real fault into the lab: "
    + "; ".join(f"{f.name} ({f.help})" for f in FAULT_CATALOGUE)
    + "; unhang (SIGCONT a hung lab); heal (unhang, and undo disk-full)."
)
SCENARIOS = (*(f.name for f in FAULT_CATALOGUE), "unhang", "heal")


@app.command("break", help=BREAK_HELP)
def break_cmd(
    ctx: typer.Context,
    scenario: Annotated[str, typer.Argument(help="Fault to inject (see above).")],
    directory: DirOption = None,
    seconds: Annotated[
        float, typer.Option(min=0.1, max=3600, help="slow-script, pause, blocked-clients.")
    ] = 30.0,
    count: Annotated[int, typer.Option(min=1, max=10_000, help="blocked-clients.")] = 150,
    size_mb: Annotated[int, typer.Option(min=1, max=1024, help="disk-full tmpfs size.")] = 2,
) -> None:
    """Break the lab for real, then see what `redis-runbook diagnose` says."""
    from redis_runbook import lab
    from redis_runbook.lab.faults import FAULTS, FaultOptions, UnknownFault, inject
    from redis_runbook.lab.faults_live import heal
    from redis_runbook.lab.layout import STATE_NAME
    from redis_runbook.lab.lifecycle import CONFIG_NAME, lab_server

    if scenario not in SCENARIOS:
        raise UnknownFault(
            f"unknown scenario {scenario!r}; valid: {', '.join(SCENARIOS)}",
            "redis-runbook lab break --help",
        )
    state = lab.state_dir(directory)
    _single_server_lab(state, "break")
    if not (state / STATE_NAME).exists():
        raise LabError(f"no lab in {state}", "redis-runbook lab up")
    server = lab_server(state)
    config_path = state / CONFIG_NAME
    if scenario in ("unhang", "heal"):
        done = heal(server) if scenario == "heal" else _unhang(server)
        if globals_of(ctx).json:
            print_json({"scenario": scenario, "done": done})
            return
        out.print("\n".join(done) or f"lab {scenario}: nothing to undo", markup=False)
        return
    options = FaultOptions(seconds=seconds, count=count, size_mb=size_mb, holder_config=config_path)
    injected = inject(scenario, server, options)
    document = {
        "scenario": injected.scenario,
        "summary": injected.summary,
        "files": [str(p) for p in injected.files],
        "backups": [str(p) for p in injected.backups],
        "server": injected.server_state,
        "expect": FAULTS[scenario].expect,
        "config_path": str(config_path),
    }
    if globals_of(ctx).json:
        print_json(document)
        return
    out.print(f"lab break {scenario}: {injected.summary}", markup=False)
    for path, copy in zip(injected.files, injected.backups, strict=False):
        out.print(f"  changed {path} (original kept in {copy})", markup=False)
    out.print(f"  server: {injected.server_state}", markup=False)
    out.print(
        f"now run: redis-runbook --config {config_path} diagnose"
        f"   (expected: scenario {FAULTS[scenario].expect})",
        markup=False,
    )


def _unhang(server: RedisServer) -> list[str]:
    from redis_runbook.service.process import proc_state

    pid = server.pid()
    if pid is None or proc_state(pid) not in ("T", "t"):
        return []
    os.kill(pid, signal.SIGCONT)
    return [f"resumed redis-server pid {pid} (SIGCONT)"]
