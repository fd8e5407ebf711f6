"""`recover emergency-start` (seed §4.4): when nothing can be loaded, start Redis
empty — after moving the whole data dir aside, never deleting it.

Typed confirmation of the word EMERGENCY (or --yes with --i-understand-data-loss).
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from redis_runbook.aside import move_aside, stamp, writable_dir
from redis_runbook.config import Config
from redis_runbook.errors import Refused
from redis_runbook.persistence.files import data_layout
from redis_runbook.persistence.layout import DataLayout
from redis_runbook.procedures.context import ProcedureContext
from redis_runbook.procedures.engine import Confirm, Plan, Step, StepFailed
from redis_runbook.procedures.followup import schedulers_follow_up
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


@dataclass
class EmergencyStart:
    """The emergency start's steps over what they share: the data dir, the file
    names (for the hints at the end) and where the old data was moved."""

    ctx: ProcedureContext
    layout: DataLayout
    aside: Path | None = None

    @property
    def data_dir(self) -> Path:
        """The service's data dir."""
        return self.layout.data_dir

    def stop(self) -> str:
        """Stop Redis, saving first (the save lands in the copy moved aside)."""
        service = self.ctx.service
        if service.state().state is RunState.STOPPED:
            return "already stopped"
        service.stop(save=True)
        return "stopped (its data saved first, then kept in the aside copy)"

    def move(self) -> str:
        """Move the whole data dir aside (never deleted)."""
        self.aside = move_aside(self.data_dir, "emergency")
        return f"moved {self.data_dir} to {self.aside}"

    def recreate(self) -> str:
        """An empty data dir with the old one's mode, owned by the server's user."""
        assert self.aside is not None, "move() runs first"
        self.data_dir.mkdir(mode=self.aside.stat().st_mode & 0o7777)
        uid, gid = self.ctx.service.owner
        os.chown(self.data_dir, uid, gid)
        return f"created an empty {self.data_dir} owned by {uid}:{gid}"

    def start(self) -> str:
        """Start and wait until Redis answers."""
        self.ctx.service.start()
        waited = wait_started(self.ctx.service, self.ctx.config.target, READY_TIMEOUT_S)
        return f"started empty, answering after {waited:.1f} s"

    def verify(self) -> None:
        """Redis answers, with no key: it started empty."""
        client = self.ctx.answering()
        if client is None:
            raise StepFailed("Redis does not answer after the emergency start")
        try:
            keys = int(client.dbsize())  # type: ignore[arg-type]
        finally:
            client.close()
        if keys != 0:
            raise StepFailed(f"Redis started with {keys} keys: it did not start empty")

    def next_steps(self) -> str:
        """What to do with the old data, and the queues (and the expected job
        schedulers that are missing now)."""
        assert self.aside is not None, "move() runs first"
        hints = aside_hints(self.ctx.config, self.layout, self.aside)
        schedulers = schedulers_follow_up(self.ctx)
        return "; ".join(hints if schedulers is None else [*hints, schedulers])


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
    layout = data_layout(ctx.config, {}, [])  # the file names, for the hints at the end
    steps = EmergencyStart(ctx, DataLayout(**{**layout.__dict__, "data_dir": data_dir}))
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
            Step("stop Redis", steps.stop),
            Step(f"move {data_dir} aside", steps.move, destructive=True),
            Step(f"create an empty {data_dir}", steps.recreate),
            Step(
                "start Redis empty and wait until it answers",
                steps.start,
                check=steps.verify,
                on_failure="redis-runbook diagnose",
            ),
            Step("next: what to do with the old data, and the queues", steps.next_steps),
        ],
    )
