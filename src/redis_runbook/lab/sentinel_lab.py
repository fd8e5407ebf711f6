"""`lab up --sentinel | down | status`: the Sentinel topology as a lab.

The lab directory then holds topology.json (the ports, and the master when the lab was
last brought down), node-0..2/ (redis-server), sentinel-0..2/ and redis-runbook.toml.
`lab up --sentinel` starts what is not running: a dead data node comes back as a replica
of the current master (never as a second master), a dead Sentinel with a fresh
sentinel.conf that monitors the current master.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from redis_runbook.config import toml
from redis_runbook.errors import LabError
from redis_runbook.lab.lifecycle import kept_sections
from redis_runbook.lab.server import RedisServer
from redis_runbook.lab.topology import (
    REPLICA_SETTINGS,
    SERVICE,
    STATE_NAME,
    SentinelProcess,
    Topology,
    start_topology,
)
from redis_runbook.service.process import wait_exit

CONFIG_NAME = "redis-runbook.toml"
LAB_MAXMEMORY = "64mb"
PROBE_TIMEOUT_S = 1.0
STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class NodeStatus:
    """One process of the topology: `node-N` (redis-server) or `sentinel-N`."""

    name: str
    port: int
    pid: int | None
    role: str | None = None  # a data node's ROLE when it answers

    @property
    def running(self) -> bool:
        """True when its pidfile names a live process."""
        return self.pid is not None

    def to_json(self) -> dict[str, object]:
        """JSON-ready dict."""
        return {
            "name": self.name,
            "port": self.port,
            "pid": self.pid,
            "running": self.running,
            "role": self.role,
        }


@dataclass(frozen=True)
class TopologyStatus:
    """Where the Sentinel lab is, which of its processes run and who is the master
    (as a Sentinel names it)."""

    dir: Path
    running: bool
    service: str
    master: str | None
    servers: list[NodeStatus]
    sentinels: list[NodeStatus]
    config_path: Path

    @property
    def master_port(self) -> int | None:
        """The port of the master a Sentinel named."""
        return int(self.master.rpartition(":")[2]) if self.master else None

    def to_json(self) -> dict[str, object]:
        """JSON-ready dict."""
        return {
            "dir": str(self.dir),
            "mode": "sentinel",
            "running": self.running,
            "service": self.service,
            "master": self.master,
            "servers": [s.to_json() for s in self.servers],
            "sentinels": [s.to_json() for s in self.sentinels],
            "config_path": str(self.config_path),
        }


def has_topology(directory: Path) -> bool:
    """True when `directory` holds a Sentinel lab (`lab up --sentinel`)."""
    return (directory / STATE_NAME).is_file()


def _read_state(directory: Path) -> dict[str, Any]:
    path = directory / STATE_NAME
    try:
        state = json.loads(path.read_text())
        servers = [int(p) for p in state["servers"]]
        sentinels = [int(p) for p in state["sentinels"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LabError(
            f"cannot read the Sentinel lab state {path}: {exc}",
            f"move {directory} aside and run redis-runbook lab up --sentinel again",
        ) from None
    master = state.get("master")
    return {
        "servers": servers,
        "sentinels": sentinels,
        "master": master if isinstance(master, int) else None,
    }


def _write_state(directory: Path, servers: list[int], sentinels: list[int], master: int) -> None:
    state = {"servers": servers, "sentinels": sentinels, "master": master}
    (directory / STATE_NAME).write_text(json.dumps(state) + "\n")


def _lab_servers(directory: Path, ports: list[int]) -> list[RedisServer]:
    return [RedisServer(directory / f"node-{n}", port=port) for n, port in enumerate(ports)]


def _lab_sentinels(directory: Path, ports: list[int]) -> list[SentinelProcess]:
    return [SentinelProcess(directory / f"sentinel-{n}", port=p) for n, p in enumerate(ports)]


def _probe(port: int, *command: str) -> Any:
    """One command to a local process with a short timeout; None when it does not answer."""
    client = redis.Redis(
        port=port,
        socket_timeout=PROBE_TIMEOUT_S,
        socket_connect_timeout=PROBE_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )
    try:
        return client.execute_command(*command)
    except redis.RedisError:
        return None
    finally:
        client.close()


def _ask_master(sentinels: list[NodeStatus]) -> str | None:
    for sentinel in sentinels:
        if not sentinel.running:
            continue
        reply = _probe(sentinel.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        if isinstance(reply, list | tuple) and len(reply) == 2:
            return f"{reply[0]}:{reply[1]}"
    return None


def topology_status(directory: Path) -> TopologyStatus:
    """Which processes of the Sentinel lab in `directory` run, their roles, and the
    master a Sentinel names. Each probe has a short timeout; never raises for a process
    that does not answer."""
    state = _read_state(directory)
    servers = []
    for server in _lab_servers(directory, state["servers"]):
        assert server.port is not None
        pid = server.pid()
        role = None
        if pid is not None:
            reply = _probe(server.port, "ROLE")
            role = str(reply[0]) if isinstance(reply, list) and reply else None
        servers.append(NodeStatus(server.workdir.name, server.port, pid, role))
    sentinels = [
        NodeStatus(s.workdir.name, s.port, s.pid())
        for s in _lab_sentinels(directory, state["sentinels"])
    ]
    return TopologyStatus(
        dir=directory,
        running=all(n.running for n in (*servers, *sentinels)),
        service=SERVICE,
        master=_ask_master(sentinels),
        servers=servers,
        sentinels=sentinels,
        config_path=directory / CONFIG_NAME,
    )


def _write_lab_config(directory: Path, master_port: int, sentinel_ports: list[int]) -> None:
    config = {
        "target": {
            # With [target.sentinel] only the scheme and the db of the url are used.
            "url": f"redis://127.0.0.1:{master_port}/0",
            "sentinel": {
                "service": SERVICE,
                "addresses": [f"127.0.0.1:{port}" for port in sentinel_ports],
            },
        },
        "server": {"maxmemory": LAB_MAXMEMORY},
        **kept_sections(directory),
    }
    header = (
        "# Written by `redis-runbook lab up --sentinel`: points redis-runbook at the lab's\n"
        "# Sentinels, which name the current master.\n\n"
    )
    (directory / CONFIG_NAME).write_text(header + toml.dumps(config))


def _current_master(state: dict[str, Any], current: TopologyStatus) -> int:
    """Who the master is now: what a Sentinel says, else a live node whose ROLE is
    master, else the master when the lab was brought down, else node-0."""
    if current.master_port is not None:
        return current.master_port
    for node in current.servers:
        if node.role == "master":
            return node.port
    return int(state["master"] or state["servers"][0])


def _restart(directory: Path, state: dict[str, Any], current: TopologyStatus) -> int:
    """Start the processes of `current` that are not running; returns the master port."""
    master_port = _current_master(state, current)
    started: list[RedisServer | SentinelProcess] = []
    try:
        order = sorted(current.servers, key=lambda n: n.port != master_port)  # master first
        for node in order:
            if node.running:
                continue
            settings = dict(REPLICA_SETTINGS)  # the master's too: it was a replica once
            if node.port != master_port:
                settings["replicaof"] = f"127.0.0.1 {master_port}"
            server = RedisServer(directory / node.name, port=node.port, settings=settings)
            started.append(server)
            server.start()
        for node in current.sentinels:
            if node.running:
                continue
            sentinel = SentinelProcess(directory / node.name, port=node.port)
            started.append(sentinel)
            sentinel.write_conf(master_port)
            sentinel.start()
        servers = _lab_servers(directory, state["servers"])
        servers.sort(key=lambda s: s.port != master_port)  # Topology: servers[0] is the master
        topology = Topology(directory, servers, _lab_sentinels(directory, state["sentinels"]))
        topology.wait_settled()
    except BaseException:
        for process in started:
            with contextlib.suppress(Exception):
                process.kill()
        raise
    return master_port


def up_topology(directory: Path) -> TopologyStatus:
    """Start the Sentinel lab in `directory` and write its redis-runbook.toml.
    Idempotent: a lab whose processes all run is left as it is; one that was brought
    down (or lost a process) gets the missing processes back, on the same ports."""
    if (directory / "lab.json").exists() and not has_topology(directory):
        raise LabError(
            f"{directory} holds a single-server lab",
            "use another --dir for the Sentinel lab (redis-runbook lab up --sentinel --dir DIR)",
        )
    if not has_topology(directory):
        directory.mkdir(parents=True, exist_ok=True)
        topology = start_topology(directory)
        master_port = topology.servers[0].port
        assert master_port is not None
        sentinel_ports = [s.port for s in topology.sentinels]
        _write_state(
            directory, [s.port or 0 for s in topology.servers], sentinel_ports, master_port
        )
        _write_lab_config(directory, master_port, sentinel_ports)
        return topology_status(directory)
    state = _read_state(directory)
    current = topology_status(directory)
    if not current.running:
        master_port = _restart(directory, state, current)
        _write_state(directory, state["servers"], state["sentinels"], master_port)
        _write_lab_config(directory, master_port, state["sentinels"])
    elif not current.config_path.is_file():
        _write_lab_config(directory, _current_master(state, current), state["sentinels"])
    return topology_status(directory)


def down_topology(directory: Path) -> TopologyStatus:
    """Stop the Sentinel lab: the Sentinels first (SIGTERM, so that they start no
    failover while the nodes stop), then the replicas and the master last, each with
    SHUTDOWN SAVE. The master is remembered for the next `lab up --sentinel`; the data
    stays on disk."""
    if not has_topology(directory):
        raise LabError(f"no Sentinel lab in {directory}", "redis-runbook lab up --sentinel")
    state = _read_state(directory)
    current = topology_status(directory)
    master_port = _current_master(state, current)
    _write_state(directory, state["servers"], state["sentinels"], master_port)
    for sentinel in _lab_sentinels(directory, state["sentinels"]):
        pid = sentinel.pid()
        if pid is None:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not wait_exit(pid, STOP_TIMEOUT_S):
            raise LabError(
                f"redis-sentinel pid {pid} did not exit within {STOP_TIMEOUT_S:g} s of SIGTERM",
                f"read {sentinel.workdir / 'sentinel.log'}; then kill {pid}",
            )
    servers = _lab_servers(directory, state["servers"])
    for server in sorted(servers, key=lambda s: s.port == master_port):  # master last
        server.stop(save=True, timeout=STOP_TIMEOUT_S)
    return topology_status(directory)
