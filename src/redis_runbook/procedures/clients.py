"""`clients list | kill` (seed §3.3 "identify problematic clients" and "kill
blocked clients if necessary"): CLIENT LIST parsed by field name, and CLIENT
KILL ID as a Plan with one destructive step and a y/N confirmation.

The kill refuses the connection it runs on and any connection named like the
tool's own (another redis-runbook process: a running procedure holding its
lock, the monitor); an id that is not connected is an error, nothing killed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from redis_runbook.bullmq.keys import WORKER_WAITS
from redis_runbook.errors import Refused, UnknownName
from redis_runbook.procedures.context import ProcedureContext
from redis_runbook.procedures.engine import Confirm, Plan, Step
from redis_runbook.replies import parse_client_list
from redis_runbook.stall import stall_errors
from redis_runbook.target import redis_errors
from redis_runbook.units import format_bytes, format_duration


def _int(fields: dict[str, str], name: str) -> int:
    try:
        return int(fields.get(name, "0"))
    except ValueError:
        return 0


@dataclass(frozen=True)
class ClientInfo:
    """One CLIENT LIST row, the fields the operator needs."""

    id: int
    addr: str
    name: str
    age: int
    idle: int
    flags: str
    cmd: str
    db: int
    omem: int

    @classmethod
    def parse(cls, fields: dict[str, str]) -> ClientInfo:
        """From one parsed CLIENT LIST line (missing fields become 0 / '')."""
        return cls(
            id=_int(fields, "id"),
            addr=fields.get("addr", ""),
            name=fields.get("name", ""),
            age=_int(fields, "age"),
            idle=_int(fields, "idle"),
            flags=fields.get("flags", ""),
            cmd=fields.get("cmd", ""),
            db=_int(fields, "db"),
            omem=_int(fields, "omem"),
        )

    @property
    def blocked(self) -> bool:
        """Blocked in a blocking command (flag `b`)."""
        return "b" in self.flags

    def describe(self) -> str:
        """`id 12 10.0.0.5:50412 name=worker-1 cmd=blpop idle 30 s age 2 m 05 s`."""
        name = f" name={self.name}" if self.name else ""
        state = " BLOCKED" if self.blocked else ""
        return (
            f"id {self.id} {self.addr}{name} cmd={self.cmd}{state} idle "
            f"{format_duration(self.idle)}, age {format_duration(self.age)}, "
            f"output buffer {format_bytes(self.omem)}"
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (docs/json.md, `clients list`)."""
        return {
            "id": self.id,
            "addr": self.addr,
            "name": self.name,
            "age": self.age,
            "idle": self.idle,
            "flags": self.flags,
            "cmd": self.cmd,
            "db": self.db,
            "omem": self.omem,
            "blocked": self.blocked,
        }


def read_clients(client: redis.Redis) -> tuple[list[ClientInfo], int]:
    """Every connected client, and the id of the connection that asked."""
    pipe = client.pipeline(transaction=False)
    pipe.execute_command("CLIENT", "ID")
    pipe.execute_command("CLIENT", "LIST")
    own_id, text = pipe.execute()
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return [ClientInfo.parse(f) for f in parse_client_list(str(text))], int(own_id)


def list_clients(
    ctx: ProcedureContext, *, blocked: bool = False, idle_over: float | None = None
) -> list[ClientInfo]:
    """Connected clients, optionally only blocked ones and/or idle longer than
    `idle_over` seconds, in CLIENT LIST order (oldest connection first)."""
    client = ctx.client()
    try:
        with stall_errors(ctx.config.target, "clients list"):
            clients, _own = read_clients(client)
    finally:
        client.close()
    return [
        c
        for c in clients
        if (not blocked or c.blocked) and (idle_over is None or c.idle > idle_over)
    ]


SHOWN_IDS = 5  # an unknown id names a few of the connected ones, not all of them


def _victim(ctx: ProcedureContext, client_id: int) -> ClientInfo:
    client = ctx.client()
    try:
        with stall_errors(ctx.config.target, "clients kill"):
            clients, own_id = read_clients(client)
    finally:
        client.close()
    if client_id == own_id:
        raise Refused(
            f"client {client_id} is this command's own connection: refusing to kill it",
            "redis-runbook clients list   # pick another id",
        )
    found = next((c for c in clients if c.id == client_id), None)
    if found is None:
        others = sorted(c.id for c in clients if c.id != own_id)
        shown = ", ".join(str(i) for i in others[:SHOWN_IDS])
        more = ", ..." if len(others) > SHOWN_IDS else ""
        plural = "s" if len(others) != 1 else ""
        connected = (
            f"{len(others)} other client{plural} connected, id{plural} {shown}{more}"
            if others
            else "no other client connected"
        )
        raise UnknownName(
            f"no client with id {client_id} is connected to {ctx.where} ({connected})",
            "redis-runbook clients list",
        )
    if found.name == ctx.config.target.client_name:
        raise Refused(
            f"client {client_id} is a redis-runbook connection ({found.describe()}): "
            "refusing to kill the tool's own connections",
            "stop that redis-runbook process instead; redis-runbook journal shows what it runs",
        )
    return found


def plan_kill(ctx: ProcedureContext, client_id: int) -> Plan:
    """Build the kill plan: one destructive step, CLIENT KILL ID. Raises
    UnknownName (no such client) or Refused (our own connection) first."""
    victim = _victim(ctx, client_id)

    def kill() -> str:
        """CLIENT KILL ID <id> SKIPME yes: disconnect exactly that client."""
        client = ctx.client()
        try:
            with redis_errors(ctx.where):
                killed = client.execute_command(
                    "CLIENT", "KILL", "ID", str(client_id), "SKIPME", "yes"
                )
        finally:
            client.close()
        if int(killed) == 0:
            return f"client {client_id} had already disconnected: nothing to kill"
        return f"killed client {victim.describe()}"

    notes = [f"client: {victim.describe()}"]
    if victim.cmd.lower() in WORKER_WAITS:
        notes.append(
            f"{victim.cmd} is how BullMQ workers wait for jobs: the worker reconnects; "
            "a job it was processing is retried once its lock expires (stalled)"
        )
    return Plan(
        procedure="clients kill",
        target=ctx.where,
        confirm=Confirm.YES_NO,
        notes=notes,
        steps=[
            Step(
                f"disconnect client {client_id} (CLIENT KILL ID {client_id})",
                kill,
                destructive=True,
                on_failure="redis-runbook clients list",
            )
        ],
    )
