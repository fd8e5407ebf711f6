"""`target`: how Redis is reached.

    client.py     URL, TLS, ACL credentials, timeouts; the one-round-trip handshake;
                  clients aimed at one node; errors classified into one-line messages
    sentinel.py   Sentinel: the current master (confirmed with ROLE)
    topology.py   what every Sentinel and data node says (NodeView, Topology)

`make_client(target)` here resolves a Sentinel target's master first and then aims a
client at it (client.py never asks Sentinel, so the two modules import one way).
The URL parser is below config, in target_url.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis

from redis_runbook.config import TargetConfig
from redis_runbook.target import client
from redis_runbook.target.client import (
    RunbookConnection,
    RunbookSSLConnection,
    RunbookUnixConnection,
    classify,
    client_cli,
    connect,
    display_url,
    redis_cli_prefix,
    redis_errors,
    target_at,
    target_display,
)

__all__ = [
    "RunbookConnection",
    "RunbookSSLConnection",
    "RunbookUnixConnection",
    "classify",
    "client_cli",
    "client_kwargs",
    "connect",
    "display_url",
    "make_client",
    "redis_cli_prefix",
    "redis_errors",
    "target_at",
    "target_display",
]


def _node(
    target: TargetConfig, env: Mapping[str, str] | None, node: tuple[str, int] | None
) -> tuple[str, int] | None:
    """`node`, or for a Sentinel target (TCP) the master the Sentinels name now."""
    if node is None and target.sentinel is not None and target.scheme != "unix":
        from redis_runbook.target.sentinel import resolve_master  # Sentinel targets only

        return resolve_master(target, env)
    return node


def client_kwargs(
    target: TargetConfig,
    env: Mapping[str, str] | None = None,
    node: tuple[str, int] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for `redis.Redis` (see client.client_kwargs); a Sentinel
    target's current master is resolved first (TargetUnavailable when no Sentinel
    names one)."""
    return client.client_kwargs(target, env, _node(target, env, node))


def make_client(
    target: TargetConfig,
    env: Mapping[str, str] | None = None,
    *,
    decode: bool = True,
    node: tuple[str, int] | None = None,
) -> redis.Redis:
    """A lazily-connecting client (see client.make_client) aimed at `node`, the
    target's address, or a Sentinel target's current master."""
    return client.make_client(target, env, decode=decode, node=_node(target, env, node))
