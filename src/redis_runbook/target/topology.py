"""The deployment as its nodes see it: what every Sentinel says (SENTINEL MASTER,
REPLICAS, SENTINELS, CKQUORUM) and what every data node says about itself (ROLE,
INFO replication), gathered once for the Sentinel checks, diagnose and failover."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from redis_runbook.config import Config
from redis_runbook.errors import RunbookError
from redis_runbook.replies import info_fields
from redis_runbook.target import make_client
from redis_runbook.target.sentinel import SentinelView, split_address, view_of


@dataclass
class NodeView:
    """One data node as it describes itself (ROLE + INFO replication)."""

    address: str
    role_reply: list[Any] = field(default_factory=list)
    info: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    @property
    def role(self) -> str | None:
        """`master` or `slave` (None when the node did not answer)."""
        return str(self.role_reply[0]) if self.role_reply else None


@dataclass
class Topology:
    """Everything the topology checks read."""

    service: str
    views: list[SentinelView]
    nodes: list[NodeView]

    @property
    def answering(self) -> list[SentinelView]:
        """The Sentinels that answered about the service."""
        return [v for v in self.views if v.master is not None]

    @property
    def master(self) -> dict[str, str] | None:
        """SENTINEL MASTER from the first Sentinel that answered."""
        return self.answering[0].master if self.answering else None

    @property
    def replicas(self) -> list[dict[str, str]]:
        """SENTINEL REPLICAS from the first Sentinel that answered."""
        return self.answering[0].replicas if self.answering else []

    @property
    def master_address(self) -> str | None:
        """`ip:port` of the master as Sentinel names it."""
        m = self.master
        return f"{m.get('ip')}:{m.get('port')}" if m else None

    @property
    def failover_in_progress(self) -> bool:
        """A Sentinel flags the master `failover_in_progress`."""
        return any("failover_in_progress" in (v.master or {}).get("flags", "") for v in self.views)


def node_view(config: Config, address: str, env: Mapping[str, str] | None) -> NodeView:
    """ROLE and INFO replication of one data node; never raises."""
    view = NodeView(address)
    try:
        client = make_client(config.target, env, node=split_address(address))
    except RunbookError as exc:
        view.error = exc.message
        return view
    try:
        pipe = client.pipeline(transaction=False)
        pipe.execute_command("ROLE")
        pipe.execute_command("INFO", "replication")
        role, info = pipe.execute()
        view.role_reply = list(role)
        view.info = info_fields(info)
    except redis.RedisError as exc:
        view.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    finally:
        client.close()
    return view


def node_command(
    config: Config, address: str, *command: Any, env: Mapping[str, str] | None = None
) -> Any:
    """One command on one data node, over a connection of its own (raises)."""
    client = make_client(config.target, env, node=split_address(address))
    try:
        return client.execute_command(*command)
    finally:
        client.close()


def gather(config: Config, env: Mapping[str, str] | None = None) -> Topology:
    """Ask every Sentinel, then every data node they name. Read-only; never raises."""
    sentinel = config.target.sentinel
    assert sentinel is not None
    timeout = config.target.connect_timeout
    views = [view_of(sentinel, a, timeout, env) for a in sentinel.addresses]
    topology = Topology(sentinel.service, views, [])
    addresses: list[str] = []
    for view in topology.answering:
        assert view.master is not None
        addresses.append(f"{view.master.get('ip')}:{view.master.get('port')}")
        addresses += [f"{r.get('ip')}:{r.get('port')}" for r in view.replicas]
    for address in dict.fromkeys(addresses):
        topology.nodes.append(node_view(config, address, env))
    return topology
