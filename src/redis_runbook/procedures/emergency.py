"""`recover emergency-start` (seed §4.4): when nothing can be loaded, start Redis
empty — after moving the whole data dir aside, never deleting it.

Typed confirmation of the word EMERGENCY (or --yes with --i-understand-data-loss).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from redis_runbook.aside import move_aside, stamp, writable_dir
from redis_runbook.config import Config
from redis_runbook.errors import Refused
from redis_runbook.persistence.files import data_layout
from redis_runbook.persistence.layout import DataLayout
from redis_runbook.procedures.context import ProcedureContext
from redis_runbook.procedures.engine import Confirm, Plan, Step, StepFailed
from redis_runbook.readiness import wait_started
from redis_runbook.service import RunState
from redis_runbook.target import redis_cli_prefix

CONFIRM_WORD = "EMERGENCY"
READY_TIMEOUT_S = 60.0


def stop_command(config: Config) -> str:
    """The command that stops this Redis by hand (saving first, where it can)."""
    service = config.service
    if service.kind == "compose":
        file = ["-f", str(service.compose_file)] if service.compose_file else []
        return shlex.join(["docker", "compose", *file, "stop", service.compose_service])
    if service.kind == "systemd":
        return shlex.join(["systemctl", "stop", service.systemd_unit])
    return f"{redis_cli_prefix(config.target)} SHUTDOWN SAVE"


def aside_hints(config: Config, layout: DataLayout, aside: Path) -> list[str]:
    """What to do with the data dir an emergency start moved aside, as commands that
    work from here (restore reads only archives: it is no use for this dir)."""
    data = layout.data_dir
    moved = DataLayout(**{**layout.__dict__, "data_dir": aside})
    looks = []
    if moved.rdb_path.is_file():
        looks.append(f"`{shlex.join(['redis-check-rdb', str(moved.rdb_path)])}`")
    if moved.manifest_path.is_file():
        looks.append(f"`{shlex.join(['redis-check-aof', str(moved.manifest_path)])}`")
    elif moved.single_aof_path.is_file():
        looks.append(f"`{shlex.join(['redis-check-aof', str(moved.single_aof_path)])}`")
    has_aof = moved.manifest_path.is_file() or moved.single_aof_path.is_file()
    procedure = "recover aof" if has_aof else "recover restart"
    swap = (
        f"mv {shlex.quote(str(data))} {shlex.quote(f'{data}.{stamp()}.after-emergency')} && "
        f"mv {shlex.quote(str(aside))} {shlex.quote(str(data))}"
    )
    hints = [f"the old data dir is kept, untouched, as {aside}"]
    if looks:
        hints.append("look at it: " + "; ".join(looks))
    hints.append(
        f"to go back to it and let {procedure} load or repair what it can (what is written "
        f"from now on is kept aside in turn): `{stop_command(config)}`, then `{swap}`, then "
        f"`redis-runbook {procedure}`"
    )
    if config.reconstruct.sources:
        hints.append(
            "rebuild the BullMQ queues from PostgreSQL: `redis-runbook queues reconstruct`"
        )
    else:
        hints.append(
            "to rebuild the BullMQ queues from PostgreSQL, add [[reconstruct.sources]] to the "
            "config (docs/configuration.md), then run redis-runbook queues reconstruct"
        )
    return hints


def plan_emergency_start(ctx: ProcedureContext, force: bool = False) -> Plan:
    """Build the plan; refuses when Redis runs (unless `force`) or the data dir is
    unusable. Nothing is changed while planning."""
    service = ctx.service
    state = service.state()
    data_dir = service.data_dir
    problem = writable_dir(data_dir.parent)
    if problem:
        raise Refused(f"cannot move the data dir aside: {problem}", "check [service] data_dir")
    if not data_dir.exists():
        raise Refused(f"data dir {data_dir} does not exist", "check [service] data_dir")
    if state.state is RunState.RUNNING and not force:
        raise Refused(
            f"Redis is running ({state.detail}): an emergency start is for a Redis that cannot "
            "start with its data",
            "redis-runbook diagnose; if you really mean it: redis-runbook recover "
            "emergency-start --force",
        )
    moved: dict[str, Path] = {}
    layout = data_layout(ctx.config, {}, [])  # the file names, for the hints at the end
    layout = DataLayout(**{**layout.__dict__, "data_dir": data_dir})

    def stop() -> str:
        if service.state().state is RunState.STOPPED:
            return "already stopped"
        service.stop(save=True)
        return "stopped (its data saved first, then kept in the aside copy)"

    def move() -> str:
        moved["aside"] = move_aside(data_dir, "emergency")
        return f"moved {data_dir} to {moved['aside']}"

    def recreate() -> str:
        old = moved["aside"].stat()
        data_dir.mkdir(mode=old.st_mode & 0o7777)
        uid, gid = service.owner
        os.chown(data_dir, uid, gid)
        return f"created an empty {data_dir} owned by {uid}:{gid}"

    def start() -> str:
        service.start()
        waited = wait_started(service, ctx.config.target, READY_TIMEOUT_S)
        return f"started empty, answering after {waited:.1f} s"

    def verify() -> None:
        client = ctx.answering()
        if client is None:
            raise StepFailed("Redis does not answer after the emergency start")
        try:
            keys = int(client.dbsize())  # type: ignore[arg-type]
        finally:
            client.close()
        if keys != 0:
            raise StepFailed(f"Redis started with {keys} keys: it did not start empty")

    return Plan(
        procedure="recover emergency-start",
        target=ctx.where,
        confirm=Confirm.TYPED,
        confirm_word=CONFIRM_WORD,
        data_loss=True,
        notes=[
            f"service: {service.describe()} is {state.state.value} ({state.detail})",
            "Redis will start EMPTY: every key is gone from the live server "
            "(the files are kept aside, nothing is deleted)",
        ],
        steps=[
            Step("stop Redis", stop),
            Step(f"move {data_dir} aside", move, destructive=True),
            Step(f"create an empty {data_dir}", recreate),
            Step(
                "start Redis empty and wait until it answers",
                start,
                check=verify,
                on_failure="redis-runbook diagnose",
            ),
            Step(
                "next: what to do with the old data, and the queues",
                lambda: "; ".join(aside_hints(ctx.config, layout, moved["aside"])),
            ),
        ],
    )
