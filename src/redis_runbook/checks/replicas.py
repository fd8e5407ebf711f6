"""Replication health of a target without Sentinel whose `[target] replicas` are
listed (part of `health` and `diagnose`): every listed node and the master URL are
asked `ROLE`; more than one answering `master` is a CRITICAL `split_brain`, the
check of the same name as the Sentinel topology's (topology.py). A promotion that
left the old master running, or a restart that brought a replica back as a master,
shows here instead of as "master with 0 connected replicas"."""

from __future__ import annotations

from collections.abc import Mapping

import redis

from redis_runbook.config import Config
from redis_runbook.errors import RunbookError
from redis_runbook.replies import info_fields
from redis_runbook.status import CheckResult, Status
from redis_runbook.target import make_client, redis_cli_prefix
from redis_runbook.target.sentinel import split_address
from redis_runbook.target.topology import NodeView, node_view


def _url_node(config: Config, env: Mapping[str, str] | None) -> NodeView:
    """The node [target] url names (a unix socket too), as node_view reads it."""
    url = config.target.parsed_url
    if url.host is not None:
        return node_view(config, f"{url.host}:{url.port or 6379}", env)
    view = NodeView(f"unix:{url.socket}")
    try:
        client = make_client(config.target, env)
    except RunbookError as exc:
        view.error = exc.message
        return view
    try:
        view.role_reply = list(client.execute_command("ROLE"))
        view.info = info_fields(client.execute_command("INFO", "replication"))
    except redis.RedisError as exc:
        view.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    finally:
        client.close()
    return view


def gather_nodes(config: Config, env: Mapping[str, str] | None = None) -> list[NodeView]:
    """The master URL's node and every listed replica. Read-only; never raises."""
    first = _url_node(config, env)
    others = [a for a in dict.fromkeys(config.target.replicas) if a != first.address]
    return [first, *(node_view(config, a, env) for a in others)]


def split_brain(nodes: list[NodeView], config: Config) -> CheckResult:
    """CRITICAL when more than one node says master."""
    masters = [n.address for n in nodes if n.role == "master"]
    silent = [n.address for n in nodes if n.role is None]
    summary = f"nodes answering ROLE master: {', '.join(masters) or 'none'}" + (
        f" (not answering: {', '.join(silent)})" if silent else ""
    )
    if len(masters) <= 1:
        return CheckResult(
            "split_brain", Status.OK, str(len(masters)), "exactly one node says master", summary
        )
    keep = masters[0]
    host, port = split_address(keep) if ":" in keep and not keep.startswith("unix:") else ("", 0)
    fences = "; ".join(
        f"{redis_cli_prefix(config.target, split_address(m))} REPLICAOF {host or 'HOST'} "
        f"{port or 'PORT'}"
        for m in masters[1:]
        if not m.startswith("unix:")
    )
    return CheckResult(
        "split_brain",
        Status.CRITICAL,
        str(len(masters)),
        "exactly one node says master",
        summary + ": clients may write to either and each has writes the other lacks",
        "decide which master keeps the data (the one your clients use), save the other's "
        "writes first (BGSAVE, copy its dump.rdb aside: the resync discards them), then "
        f"fence it, e.g. keeping {keep}: {fences or 'redis-cli -h OTHER REPLICAOF HOST PORT'}; "
        "then CONFIG REWRITE on it",
    )


def check_replicas(config: Config, env: Mapping[str, str] | None = None) -> list[CheckResult]:
    """The replication checks of a target without Sentinel (health, diagnose)."""
    return [split_brain(gather_nodes(config, env), config)]
