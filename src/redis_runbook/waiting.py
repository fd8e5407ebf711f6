"""Waiting for Redis: polling with a deadline, never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from redis_runbook.config import TargetConfig
from redis_runbook.errors import AuthFailed, TargetUnavailable
from redis_runbook.redisinfo import parse_info
from redis_runbook.target import make_client, target_display

POLL_S = 0.05


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
