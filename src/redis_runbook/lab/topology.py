"""A Sentinel-managed topology on loopback: 1 master, 2 replicas, 3 Sentinels, each
in a directory of its own under one lab directory, on free ports. Used by
`lab up --sentinel` (to rehearse a failover), the tests and the failover benchmark.

Timing is shortened for rehearsal (`down-after-milliseconds` 2000 instead of 30000,
`failover-timeout` 10000), so a killed master is replaced within a few seconds."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from redis_runbook.config import SentinelConfig, TargetConfig
from redis_runbook.errors import LabError
from redis_runbook.lab.server import IN_USE, START_ATTEMPTS, RedisServer
from redis_runbook.ports import free_port
from redis_runbook.service.process import read_pid, spawn_redis, tail_lines, wait_exit

SERVICE = "mymaster"
QUORUM = 2
DOWN_AFTER_MS = 2000
FAILOVER_TIMEOUT_MS = 10000
REPLICA_SETTINGS = {"repl-diskless-sync-delay": "0", "appendonly": "yes"}
STATE_NAME = "topology.json"


@dataclass
class SentinelProcess:
    """One redis-sentinel in `workdir` (it rewrites its own sentinel.conf)."""

    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    master_port: int = 0

    @property
    def conf_path(self) -> Path:
        """sentinel.conf (Sentinel writes its state into it)."""
        return self.workdir / "sentinel.conf"

    @property
    def pid_path(self) -> Path:
        """The pidfile."""
        return self.workdir / "sentinel.pid"

    @property
    def address(self) -> str:
        """`127.0.0.1:PORT`."""
        return f"127.0.0.1:{self.port}"

    def write_conf(self, master_port: int) -> None:
        """The monitoring directives for the lab's master."""
        self.master_port = master_port
        self.workdir.mkdir(parents=True, exist_ok=True)
        lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            "daemonize no",
            f"dir {self.workdir}",
            f"logfile {self.workdir / 'sentinel.log'}",
            f"pidfile {self.pid_path}",
            f"sentinel monitor {SERVICE} 127.0.0.1 {master_port} {QUORUM}",
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {SERVICE} 1",
        ]
        self.conf_path.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 15.0, retry_port: bool = False) -> None:
        """Start and wait until it answers PING. With `retry_port` (a new topology:
        nothing points at the port yet), a port taken meanwhile is replaced by
        another free one and the conf rewritten."""
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                self._start(timeout)
                return
            except LabError:
                log = self.workdir / "sentinel.log"
                in_use = log.is_file() and IN_USE in "".join(tail_lines(log, 3))
                if not (retry_port and in_use) or attempt == START_ATTEMPTS:
                    raise
                self.port = free_port()
                self.write_conf(self.master_port)

    def _start(self, timeout: float) -> None:
        self.process = spawn_redis("redis-sentinel", self.conf_path, self.workdir / "stderr.log")
        deadline = time.monotonic() + timeout
        while True:
            client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
            try:
                if client.ping():
                    return
            except redis.RedisError:
                pass
            finally:
                client.close()
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise LabError(
                    f"redis-sentinel on port {self.port} did not start",
                    f"read {self.workdir / 'sentinel.log'}",
                )
            time.sleep(0.05)

    def pid(self) -> int | None:
        """The pid from the pidfile, when alive."""
        return read_pid(self.pid_path)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal it and wait for the exit."""
        pid = self.pid() or (self.process.pid if self.process else None)
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        wait_exit(pid, 10.0)


@dataclass
class Topology:
    """The lab topology: servers[0] starts as the master."""

    directory: Path
    servers: list[RedisServer]
    sentinels: list[SentinelProcess]

    def sentinel_config(self) -> SentinelConfig:
        """[target.sentinel] for this topology."""
        return SentinelConfig(service=SERVICE, addresses=[s.address for s in self.sentinels])

    def target(self) -> TargetConfig:
        """A Sentinel target (the url only carries scheme and db)."""
        first = self.servers[0]
        return TargetConfig(
            url=f"redis://127.0.0.1:{first.port}/0", sentinel=self.sentinel_config()
        )

    def server_at(self, port: int) -> RedisServer:
        """The server listening on `port`."""
        for server in self.servers:
            if server.port == port:
                return server
        raise LabError(f"no lab server on port {port}")

    def master_port(self) -> int:
        """The port the first Sentinel that answers names as the master."""
        for sentinel in self.sentinels:
            client = redis.Redis(port=sentinel.port, decode_responses=True, socket_timeout=2)
            try:
                reply = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
                return int(reply[1])
            except redis.ConnectionError:
                continue
            finally:
                client.close()
        raise LabError("no lab Sentinel answers", "redis-runbook lab status")

    def wait_settled(self, timeout: float = 30.0) -> None:
        """Until every Sentinel knows the replicas and the other Sentinels, both
        replicas' links are up and no failover is in progress (a new failover needs
        all of it)."""
        deadline = time.monotonic() + timeout
        want_replicas = len(self.servers) - 1
        while True:
            if self._settled(want_replicas):
                return
            if time.monotonic() > deadline:
                raise LabError(
                    "the Sentinel topology did not settle in time",
                    f"read the sentinel.log files under {self.directory}",
                )
            time.sleep(0.1)

    def _settled(self, want_replicas: int) -> bool:
        try:  # the current master: after a failover it is not servers[0]
            port = self.master_port() if self.sentinels else self.servers[0].port or 0
        except (LabError, redis.RedisError):
            return False
        primary = redis.Redis(port=port, decode_responses=True, socket_timeout=2)
        try:
            info: Any = primary.info("replication")
        except redis.RedisError:
            return False
        finally:
            primary.close()
        online = [
            k
            for k, v in info.items()
            if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online"
        ]
        if len(online) < want_replicas:
            return False
        for sentinel in self.sentinels:
            client = redis.Redis(port=sentinel.port, decode_responses=True, socket_timeout=2)
            try:
                master: dict[str, str] = client.sentinel_master(SERVICE)
                replicas = client.sentinel_slaves(SERVICE)
            except redis.RedisError:
                return False
            finally:
                client.close()
            if int(master.get("num-other-sentinels", 0)) < len(self.sentinels) - 1:
                return False
            linked = [r for r in replicas if r.get("master-link-status") == "ok"]
            flags = str(master.get("flags", ""))
            if len(linked) < want_replicas or "s_down" in flags or "failover" in flags:
                return False
        return True

    def stop(self) -> None:
        """Kill every process (lab data stays on disk)."""
        for sentinel in self.sentinels:
            sentinel.kill()
        for server in self.servers:
            if server.pid() is not None or (server.process and server.process.poll() is None):
                server.kill()


def start_topology(directory: Path, replicas: int = 2, sentinels: int = 3) -> Topology:
    """Start the master, its replicas and the Sentinels; wait until they all know
    each other. On failure every process started so far is stopped."""
    master = RedisServer(directory / "node-0")
    topology = Topology(directory, [master], [])
    try:
        master.start()
        for n in range(1, replicas + 1):
            settings = dict(REPLICA_SETTINGS, replicaof=f"127.0.0.1 {master.port}")
            server = RedisServer(directory / f"node-{n}", settings=settings)
            topology.servers.append(server)
            server.start()
        for n in range(sentinels):
            sentinel = SentinelProcess(directory / f"sentinel-{n}")
            topology.sentinels.append(sentinel)
            sentinel.write_conf(master.port or 0)
            sentinel.start(retry_port=True)
        topology.wait_settled()
    except BaseException:
        topology.stop()
        raise
    (directory / STATE_NAME).write_text(
        json.dumps(
            {
                "servers": [s.port for s in topology.servers],
                "sentinels": [s.port for s in topology.sentinels],
            }
        )
        + "\n"
    )
    return topology
