"""A Sentinel or replication topology (lab/topology.py) as the failover tests drive
it: the CLI's config for it, the CLI with a failover's timeout, a writer that
remembers which writes were acknowledged, and ROLE."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

import redis

from redis_runbook.config import Config, RunbookConfig, Thresholds
from redis_runbook.lab.server import RedisServer
from redis_runbook.lab.topology import Topology
from tests.support.cli import run_cli
from tests.support.config import write_config
from tests.support.servers import plain_client
from tests.support.waiting import wait_until

RELAXED = {"latency_ms": {"warning": 1000, "critical": 2000}}


def config_of(top: Topology, tmp_path: Path) -> Config:
    """A Config aimed at the topology, latency relaxed, state under tmp_path."""
    return Config(
        target=top.target(),
        thresholds=Thresholds.model_validate(RELAXED),
        runbook=RunbookConfig(state_dir=tmp_path / "state"),
    )


def write_topology_config(
    tmp_path: Path, target: dict[str, Any], service: dict[str, str] | None = None
) -> Path:
    """tmp_path/runbook.toml: this [target] (and [service]), latency relaxed."""
    document = {
        "target": target,
        **({"service": service} if service else {}),
        "thresholds": RELAXED,
        "runbook": {"state_dir": str(tmp_path / "state")},
    }
    return write_config(tmp_path / "runbook.toml", document)


def sentinel_toml(top: Topology, tmp_path: Path) -> Path:
    """The config of a Sentinel target on the topology."""
    sentinel = top.sentinel_config()
    return write_topology_config(
        tmp_path,
        {
            "url": top.target().url,
            "sentinel": {"service": sentinel.service, "addresses": sentinel.addresses},
        },
    )


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`redis-runbook --config CONFIG ARGS` with a failover's timeout."""
    return run_cli("--config", str(config), *args, timeout=120)


def role(server: RedisServer) -> list[Any]:
    """The server's ROLE reply."""
    return list(plain_client(server).execute_command("ROLE"))


class Writer:
    """Writes w:0, w:1, ... to one server as fast as it can, remembering which ones
    the server acknowledged (a READONLY or a dropped connection is not an ack)."""

    def __init__(self, server: RedisServer) -> None:
        self.acked: list[int] = []
        self._stop = threading.Event()
        self._client = plain_client(server, socket_timeout=30)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            try:
                self._client.set(f"w:{n}", n)
            except redis.RedisError:
                continue
            self.acked.append(n)
            n += 1

    def __enter__(self) -> Writer:
        self._thread.start()
        wait_until(lambda: len(self.acked) > 200, "writes before the failover")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def missing_on(self, server: RedisServer) -> list[int]:
        """Acknowledged writes the server does not have."""
        pipe = plain_client(server).pipeline(transaction=False)
        for n in self.acked:
            pipe.exists(f"w:{n}")
        return [n for n, found in zip(self.acked, pipe.execute(), strict=True) if not found]
