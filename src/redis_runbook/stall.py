"""What a Redis that answers nothing, or answers `BUSY`, is doing — told by what
Redis itself says, not by how much CPU it gets (a loaded host starves a busy
script as much as an idle server):

    probe = probe_stall(config.target)      # one connection, bounded by the timeout
    probe.kind                              # busy | held | paused | answers | unknown

The probe pipelines, without the tool's handshake, an unknown command, AUTH when
credentials are configured, and PING:

- no reply even to the unknown command: the event loop is held — a Lua script or
  function (before `busy-reply-threshold`), or a long command (`held`);
- the unknown command is refused at once (`-ERR unknown command`) but PING gets
  `-BUSY`: a script runs past `busy-reply-threshold` (`busy`);
- the unknown command is refused at once, AUTH/PING are held: Redis reads commands
  and postpones them — `CLIENT PAUSE` (`paused`); Redis 7.0 has no INFO field that
  says so, and a PAUSE ALL holds `CLIENT UNPAUSE` and `INFO` too;
- PING answers: nothing holds it (now).

`stall_errors()` turns the errors of a read-only report (`perf report`, `clients
list`) on such a server into ServerBusy / ServerPaused whose hint names a command
that works on it (SCRIPT KILL, waiting for the pause's end)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import redis
from redis.exceptions import BusyLoadingError

from redis_runbook.config import TargetConfig
from redis_runbook.errors import RunbookError, TargetUnavailable
from redis_runbook.replies import text as reply_text
from redis_runbook.target import (
    RunbookConnection,
    RunbookSSLConnection,
    RunbookUnixConnection,
    classify,
    client_kwargs,
    redis_cli_prefix,
    target_display,
)

PROBE_COMMAND = "REDIS-RUNBOOK-PROBE"
#: A PING answered this long after the unknown command was: it was held (a pause
#: that ended while the probe waited).
HELD_GAP_S = 0.2
BUSY = "BUSY"


class _NoHandshake:
    """A connection that sends nothing on connect: the probe sends its own commands."""

    def on_connect_check_health(self, check_health: bool = True) -> None:
        conn: Any = self
        conn._parser.on_connect(self)


class _ProbeTCP(_NoHandshake, RunbookConnection):
    pass


class _ProbeTLS(_NoHandshake, RunbookSSLConnection):
    pass


class _ProbeUnix(_NoHandshake, RunbookUnixConnection):
    pass


_PROBES: dict[type, type] = {
    RunbookConnection: _ProbeTCP,
    RunbookSSLConnection: _ProbeTLS,
    RunbookUnixConnection: _ProbeUnix,
}


@dataclass(frozen=True)
class StallProbe:
    """What the probe saw. `kind`: busy, held, paused, answers or unknown (the probe
    itself could not connect); `evidence` is one line for the operator; `redis_cli`
    is how hints spell redis-cli for the node probed."""

    kind: str
    evidence: str
    redis_cli: str = "redis-cli"
    reply: str | None = None

    @property
    def stalled(self) -> bool:
        """True for busy, held and paused."""
        return self.kind in ("busy", "held", "paused")


def probe_stall(
    target: TargetConfig, env: Mapping[str, str] | None = None, timeout: float | None = None
) -> StallProbe:
    """Ask the server what holds it (see the module doc). Read-only; waits at most
    `timeout` (default: the connect timeout) for each reply, at most three replies."""
    wait = target.connect_timeout if timeout is None else timeout
    try:
        kwargs = client_kwargs(target, env)
    except RunbookError as exc:
        return StallProbe("unknown", f"probe not sent: {exc.message}")
    handshake = kwargs["handshake"]
    node = (kwargs["host"], kwargs["port"]) if "host" in kwargs else None
    cli = redis_cli_prefix(target, node)
    kwargs["connection_class"] = _PROBES[kwargs["connection_class"]]
    path = kwargs.pop("unix_socket_path", None)
    if path:
        kwargs["path"] = path
    kwargs.update(socket_timeout=wait, socket_connect_timeout=wait, decode_responses=False)
    connection = kwargs.pop("connection_class")(**kwargs)
    commands: list[tuple[Any, ...]] = [(PROBE_COMMAND,)]
    if handshake.password is not None:
        user = (handshake.username,) if handshake.username else ()
        commands.append(("AUTH", *user, handshake.password))
    commands.append(("PING",))
    try:
        try:
            connection.connect()
        except redis.TimeoutError:
            return StallProbe(
                "held", f"probe: the connection was not set up within {wait:g} s", cli
            )
        except redis.RedisError as exc:
            return StallProbe("unknown", f"probe: {classify(exc, '').message.lstrip(': ')}", cli)
        connection.send_packed_command(connection.pack_commands(commands), check_health=False)
        return _read(connection, commands, wait, cli)
    finally:
        connection.disconnect()


def _read(connection: Any, commands: list[tuple[Any, ...]], wait: float, cli: str) -> StallProbe:
    answered_at: float | None = None
    for command in commands:
        try:
            reply: object = connection.read_response(disconnect_on_error=False)
        except redis.TimeoutError:
            if answered_at is None:
                return StallProbe(
                    "held",
                    f"probe: no reply within {wait:g} s, not even the refusal of an unknown "
                    "command: the event loop is held (a script or a long command)",
                    cli,
                )
            return StallProbe(
                "paused",
                f"probe: an unknown command was refused at once, {command[0]} got no reply "
                f"within {wait:g} s: Redis reads commands and holds them (CLIENT PAUSE)",
                cli,
            )
        except BusyLoadingError as exc:
            return StallProbe("answers", f"probe: {command[0]}: {exc}", cli, reply_text(exc))
        except redis.ResponseError as exc:
            reply = exc
        except redis.RedisError as exc:
            return StallProbe("unknown", f"probe: {type(exc).__name__}: {exc}", cli)
        now = time.monotonic()
        text = reply_text(reply)
        if command[0] == PROBE_COMMAND:
            answered_at = now
            continue
        if text.startswith(BUSY):
            return StallProbe("busy", f"probe: {command[0]}: {text.splitlines()[0]}", cli, text)
        if command[0] == "PING":
            if answered_at is not None and now - answered_at > HELD_GAP_S:
                return StallProbe(
                    "paused",
                    f"probe: PING was held {now - answered_at:.1f} s while an unknown command "
                    "was refused at once: a pause that has just ended",
                    cli,
                )
            return StallProbe("answers", f"probe: PING: {text}", cli, text)
    return StallProbe("unknown", "probe: no PING reply read", cli)


def kill_script_hint(cli: str) -> str:
    """How to end a busy script (and what to do when it wrote)."""
    return (
        f"{cli} SCRIPT KILL   (FUNCTION KILL for a function; a script that already wrote "
        f"cannot be killed: {cli} SHUTDOWN NOSAVE loses the writes since the last save); "
        "or wait for it to end"
    )


def pause_hint(cli: str) -> str:
    """How to see a pause end (a PAUSE ALL also holds CLIENT UNPAUSE and INFO)."""
    return (
        "wait for the pause to end (CLIENT PAUSE <ms> ends on its own): redis-runbook health "
        f"--watch 2 shows when Redis answers again; a PAUSE WRITE is lifted by {cli} "
        "CLIENT UNPAUSE (under PAUSE ALL that waits for the end too)"
    )


class ServerBusy(TargetUnavailable):
    """Redis runs a script (or a long command) and answers only SCRIPT KILL,
    FUNCTION KILL and SHUTDOWN NOSAVE (or nothing before busy-reply-threshold)."""


class ServerPaused(TargetUnavailable):
    """Redis holds every command of normal clients (CLIENT PAUSE)."""


def stalled_error(probe: StallProbe, where: str, what: str) -> RunbookError | None:
    """The typed error for `what` (e.g. "perf report") on a stalled server."""
    if probe.kind in ("busy", "held"):
        return ServerBusy(
            f"{where}: {what} cannot run: Redis is busy with a script or a long command "
            f"({probe.evidence})",
            kill_script_hint(probe.redis_cli),
        )
    if probe.kind == "paused":
        return ServerPaused(
            f"{where}: {what} cannot run: clients are paused ({probe.evidence})",
            pause_hint(probe.redis_cli),
        )
    return None


@contextlib.contextmanager
def stall_errors(
    target: TargetConfig, what: str, env: Mapping[str, str] | None = None
) -> Iterator[None]:
    """Classify redis-py errors raised in the block; a BUSY reply or no answer in
    time is explained by a probe and raised as ServerBusy / ServerPaused."""
    where = target_display(target)
    try:
        yield
    except (redis.RedisError, TargetUnavailable) as exc:
        error = exc if isinstance(exc, RunbookError) else classify(exc, where)
        text = f"{exc} {error.message}"
        if text.startswith(f"{BUSY} ") or f": {BUSY} " in text or "no answer in time" in text:
            stalled = stalled_error(probe_stall(target, env), where, what)
            if stalled is not None:
                raise stalled from None
        raise error from None
