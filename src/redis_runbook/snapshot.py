"""One Snapshot per run: everything the checks need, read from a live server in
two round trips after the connection handshake:

1. PING, timed on its own (the latency figure of the seed's §6.1 table);
2. one non-transactional pipeline: INFO all, CONFIG GET of each setting
   (one per parameter so Redis 6 works too), SLOWLOG LEN, LATENCY LATEST,
   CLIENT LIST.

A command the server refuses (ACL NOPERM, renamed CONFIG, managed Redis) is
recorded in `denied` and only the checks that need it turn UNKNOWN.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import redis

from redis_runbook.config import TargetConfig
from redis_runbook.errors import RunbookError
from redis_runbook.replies import parse_client_list, parse_info
from redis_runbook.target import classify, client_cli, connect, make_client, target_display

CONFIG_PARAMS = (
    "maxmemory",
    "maxmemory-policy",
    "appendonly",
    "appendfsync",
    "save",
    "dir",
    "latency-monitor-threshold",
)


@dataclass(frozen=True)
class LatencyEvent:
    """One LATENCY LATEST row."""

    event: str
    at: int
    latest_ms: int
    max_ms: int


@dataclass
class Snapshot:
    """What one health run saw. `error` is set (and the rest empty) when the
    server could not be reached or refused our credentials."""

    target: str
    taken_at: float
    connect_ms: float | None = None
    handshake_ms: float | None = None
    ping_ms: float | None = None
    ping_reply: str | None = None
    info: dict[str, str] = field(default_factory=dict)
    config: dict[str, str] = field(default_factory=dict)
    slowlog_len: int | None = None
    latency_events: list[LatencyEvent] = field(default_factory=list)
    clients: list[dict[str, str]] | None = None
    denied: dict[str, str] = field(default_factory=dict)
    error: RunbookError | None = None
    round_trips: int = 0
    # `redis-cli` with the options that reach the node read (for hints; no password).
    redis_cli: str | None = None

    @property
    def reachable(self) -> bool:
        """True when the server answered at all."""
        return self.error is None


def _pipeline(client: redis.Redis) -> list[tuple[str, object]]:
    pipe = client.pipeline(transaction=False)
    names = ["INFO all"]
    pipe.execute_command("INFO", "all")
    for param in CONFIG_PARAMS:
        names.append(f"CONFIG GET {param}")
        pipe.execute_command("CONFIG GET", param)
    names += ["SLOWLOG LEN", "LATENCY LATEST", "CLIENT LIST"]
    pipe.execute_command("SLOWLOG LEN")
    pipe.execute_command("LATENCY LATEST")
    pipe.execute_command("CLIENT LIST")
    return list(zip(names, pipe.execute(raise_on_error=False), strict=True))


def _absorb(snapshot: Snapshot, name: str, reply: object) -> None:
    if isinstance(reply, Exception):
        snapshot.denied[name] = str(reply).splitlines()[0] if str(reply) else type(reply).__name__
        return
    if name == "INFO all" and isinstance(reply, str):
        snapshot.info = parse_info(reply)
    elif name.startswith("CONFIG GET") and isinstance(reply, Mapping):
        snapshot.config.update({str(k): str(v) for k, v in reply.items()})
    elif name == "SLOWLOG LEN" and isinstance(reply, int):
        snapshot.slowlog_len = reply
    elif name == "LATENCY LATEST" and isinstance(reply, list):
        snapshot.latency_events = [
            LatencyEvent(str(row[0]), int(row[1]), int(row[2]), int(row[3]))
            for row in reply
            if isinstance(row, list) and len(row) >= 4
        ]
    elif name == "CLIENT LIST" and isinstance(reply, str):
        snapshot.clients = parse_client_list(reply)


def take_snapshot(target: TargetConfig, env: Mapping[str, str] | None = None) -> Snapshot:
    """Connect, time a PING, read everything else in one pipeline. Never raises for
    an unreachable or unauthorised server: the Snapshot carries the error."""
    where = target_display(target)
    snapshot = Snapshot(target=where, taken_at=time.time())
    try:
        client = make_client(target, env)
    except RunbookError as exc:  # e.g. the password source failed
        snapshot.error = exc
        return snapshot
    snapshot.redis_cli = client_cli(client)
    try:
        started = time.perf_counter()
        snapshot.handshake_ms = connect(client, where)
        snapshot.connect_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        try:
            snapshot.ping_reply = str(client.execute_command("PING"))
        except (redis.BusyLoadingError, redis.ResponseError) as exc:
            # An answer all the same: LOADING while the dataset loads, MISCONF after
            # a failed save (Redis refuses even PING then). The checks explain it.
            snapshot.ping_reply = str(exc)
        snapshot.ping_ms = (time.perf_counter() - started) * 1000
        for name, reply in _pipeline(client):
            _absorb(snapshot, name, reply)
        snapshot.round_trips = 2
    except RunbookError as exc:
        snapshot.error = exc
    except redis.RedisError as exc:
        snapshot.error = classify(exc, where)
    finally:
        client.close()
    return snapshot
