"""A test's redis-server: clients to drive it, Configs aimed at it, its INFO."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Protocol

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from redis_runbook.checks import HealthReport
from redis_runbook.config import Config, ServerExpectations, ServiceConfig, Thresholds
from redis_runbook.lab.server import RedisServer
from redis_runbook.status import CheckResult

# The stable top-level keys of `health --json` (docs/json.md).
HEALTH_JSON_KEYS = {
    "target",
    "time",
    "status",
    "exit_code",
    "elapsed_ms",
    "round_trips",
    "server",
    "checks",
}


class RedisFactory(Protocol):
    """Starts a RedisServer in its own directory under tmp_path (the `redis_factory`
    fixture)."""

    def __call__(
        self,
        settings: Mapping[str, str] | None = None,
        target_overrides: Mapping[str, object] | None = None,
    ) -> RedisServer: ...


def config_for(
    server: RedisServer,
    *,
    expect: ServerExpectations | None = None,
    **threshold_overrides: object,
) -> Config:
    """A Config aimed at `server`; keyword arguments replace single thresholds
    (e.g. `connected_clients=Band(warning=5, critical=10)`)."""
    return Config(
        target=server.target(),
        server=expect or ServerExpectations(),
        thresholds=Thresholds.model_validate(threshold_overrides),
    )


def process_config(
    server: RedisServer,
    *,
    connect_timeout: float = 1.0,
    expect: ServerExpectations | None = None,
    **threshold_overrides: object,
) -> Config:
    """A Config aimed at `server` whose [service] is the `process` backend on the
    server's own redis.conf, pidfile and log (what `diagnose` and recovery need)."""
    target = server.target().model_copy(update={"connect_timeout": connect_timeout})
    return Config(
        target=target,
        service=ServiceConfig(
            kind="process",
            data_dir=server.data_dir,
            owner=f"{os.getuid()}:{os.getgid()}",
            redis_conf=server.conf_path,
            pid_file=server.pid_path,
            log_file=server.log_path,
        ),
        server=expect or ServerExpectations(),
        thresholds=Thresholds.model_validate(threshold_overrides),
    )


def named(report: HealthReport, name: str) -> CheckResult:
    """The check called `name` in the report (fails the test when absent)."""
    found = [check for check in report.checks if check.name == name]
    assert len(found) == 1, f"no single {name!r} check in {[c.name for c in report.checks]}"
    return found[0]


def plain_client(server: RedisServer, **kwargs: Any) -> redis.Redis:
    """A plain redis-py client (default user) for the test to drive the server with."""
    assert server.port is not None
    options: dict[str, Any] = {
        "socket_timeout": 10.0,
        "decode_responses": True,
        "retry": Retry(NoBackoff(), 0),  # a failure shows at once, not after backoff
    }
    options.update(kwargs)
    return redis.Redis(host="127.0.0.1", port=server.port, **options)


def info(client: redis.Redis, section: str) -> dict[str, Any]:
    """INFO <section> as the dict redis-py parses it into."""
    reply = client.info(section)
    assert isinstance(reply, dict)
    return reply


def fill_memory(server: RedisServer, above_pct: float) -> list[str]:
    """Write 64 KiB values until used_memory is above `above_pct` of maxmemory."""
    client = plain_client(server)
    keys: list[str] = []
    value = "x" * 65_536
    while True:
        memory = client.info("memory")
        if memory["used_memory"] > memory["maxmemory"] * above_pct / 100:
            return keys
        batch = [f"fill:{len(keys) + i}" for i in range(8)]
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.set(key, value)
        pipe.execute()
        keys += batch
