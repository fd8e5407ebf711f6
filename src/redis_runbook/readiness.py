"""Waiting for Redis: polling with a deadline, never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from redis_runbook.config import TargetConfig
from redis_runbook.errors import AuthFailed, TargetUnavailable
from redis_runbook.redislog import match_lines, strip_prefix
from redis_runbook.replies import parse_info
from redis_runbook.service.base import RunState, Service, ServiceError
from redis_runbook.target import make_client, target_display

POLL_S = 0.05
#: How often a start is checked for a process that already died (a manager call).
EXIT_CHECK_S = 0.5
DAEMON_GRACE_S = 3.0
#: Log matches that do not explain why a start failed.
ROUTINE_KEYS = frozenset({"starting", "ready", "shutdown"})
QUOTED_LINES = 4


def wait_ready(
    target: TargetConfig,
    timeout: float,
    gone: Callable[[], str | None] | None = None,
) -> float:
    """Poll until PING answers and INFO says `loading:0`; returns the seconds waited.

    `gone` is asked between polls and returns a reason when waiting is pointless
    (the process exited); that reason is raised at once as TargetUnavailable.
    """
    started = time.monotonic()
    deadline = started + timeout
    last = "no answer yet"
    client = make_client(target)
    try:
        while time.monotonic() < deadline:
            reason = gone() if gone else None
            if reason:
                raise TargetUnavailable(reason)
            try:
                client.execute_command("PING")
                if parse_info(str(client.execute_command("INFO", "persistence")))["loading"] == "0":
                    return time.monotonic() - started
                last = "still loading the dataset"
            except redis.BusyLoadingError:
                last = "still loading the dataset"
            except redis.AuthenticationError as exc:
                raise AuthFailed(f"{target_display(target)}: {exc}") from None
            except redis.RedisError as exc:
                last = str(exc) or type(exc).__name__
            time.sleep(POLL_S)
    finally:
        client.close()
    raise TargetUnavailable(
        f"{target_display(target)} not ready after {timeout:g} s ({last})",
        "read the server log: redis-runbook diagnose",
    )


def start_failure(service: Service) -> str:
    """What the latest start left in the log that explains its end: the matched
    messages (FATAL CONFIG FILE ERROR with its line, Redis 8's unresolved
    configuration, a port in use, a bad AOF...), else its last lines."""
    lines = service.start_logs()
    found = [m.text for m in match_lines(lines, "log") if m.key not in ROUTINE_KEYS]
    if not found:
        found = [strip_prefix(line) for line in lines if strip_prefix(line)][-QUOTED_LINES:]
    return " | ".join(found[:QUOTED_LINES]) or "the log says nothing"


def wait_started(service: Service, target: TargetConfig, timeout: float) -> float:
    """`wait_ready` after `service.start()`, that stops waiting as soon as the
    service's process has exited (a redis.conf error, a port in use, a corrupt file
    kill it within milliseconds) and raises ServiceError quoting the log lines that
    say why. Returns the seconds waited."""
    checked = [float("-inf")]
    clean_exit: list[float] = []

    def gone() -> str | None:
        now = time.monotonic()
        if now - checked[0] < EXIT_CHECK_S:
            return None
        checked[0] = now
        state = service.state()
        if state.state is not RunState.STOPPED:
            return None
        if state.exit_code == 0:
            # A server that daemonizes exits 0 at once and its child takes over: only
            # when no server shows up within DAEMON_GRACE_S has it really gone.
            clean_exit[:1] = clean_exit[:1] or [now]
            if now - clean_exit[0] < DAEMON_GRACE_S:
                return None
        return f"{service.describe()} exited during its start ({state.detail})"

    try:
        return wait_ready(target, timeout, gone=gone)
    except TargetUnavailable as exc:
        if "exited during its start" not in exc.message:
            raise
        raise ServiceError(
            f"{exc.message}: {start_failure(service)}",
            "fix what the log says, then run it again; the whole log: redis-runbook diagnose",
        ) from None
