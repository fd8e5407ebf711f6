"""Talking to Redis Sentinel: find the current master the way the official client
spec says (redis-ops.md §3), and read what the Sentinels know about the topology.

Resolution: ask each Sentinel in turn (short timeout) `SENTINEL GET-MASTER-ADDR-BY-NAME`;
connect to the address it gives and confirm with `ROLE` that the node is a master;
if it is not (a failover is under way), wait a few hundred ms and start over, until
the connect timeout has passed. The Sentinel that answered goes to the front for the
next call in this process."""

from __future__ import annotations

import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from redis_runbook.config import SentinelConfig, TargetConfig, secrets
from redis_runbook.errors import RunbookError, TargetUnavailable, UnknownName
from redis_runbook.target.client import make_client

ROLE_RETRY_S = 0.25
_preferred: dict[tuple[str, ...], int] = {}


def split_address(address: str) -> tuple[str, int]:
    """`host:port` -> (host, port)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def _password(config: SentinelConfig, env: Mapping[str, str] | None) -> str | None:
    return secrets.resolve(
        "target.sentinel",
        env_var=config.password_env,
        file=config.password_file,
        command=config.password_command,
        env=env,
    )


def sentinel_client(
    config: SentinelConfig, address: str, timeout: float, env: Mapping[str, str] | None = None
) -> redis.Redis:
    """A client of one Sentinel (str replies, one attempt, `timeout` everywhere)."""
    host, port = split_address(address)
    return redis.Redis(
        host=host,
        port=port,
        username=config.username,
        password=_password(config, env),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
        client_name="redis-runbook",
    )


def ordered(addresses: Sequence[str]) -> list[str]:
    """The Sentinels, the last one that answered first."""
    first = _preferred.get(tuple(addresses), 0)
    return [*addresses[first:], *addresses[:first]]


def _remember(addresses: Sequence[str], address: str) -> None:
    _preferred[tuple(addresses)] = list(addresses).index(address)


def ask_sentinels(
    config: SentinelConfig, timeout: float, env: Mapping[str, str] | None, *command: str
) -> tuple[str, Any]:
    """Send `command` to the Sentinels in turn; the first answer and who gave it. An
    error reply is raised as redis.ResponseError; TargetUnavailable names every
    Sentinel and its failure when none answers."""
    failures = []
    for address in ordered(config.addresses):
        client = sentinel_client(config, address, timeout, env)
        try:
            reply = client.execute_command(*command)
        except redis.AuthenticationError:
            failures.append(f"{address}: authentication failed")
            continue
        except redis.ResponseError:
            raise  # an answer (INPROG, NOGOODSLAVE, NOPERM...), for the caller to judge
        except redis.RedisError as exc:
            failures.append(f"{address}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
            continue
        finally:
            client.close()
        _remember(config.addresses, address)
        return address, reply
    raise TargetUnavailable(
        f"no Sentinel answered for {config.service}: " + "; ".join(failures),
        "check [target.sentinel] addresses and that redis-sentinel runs "
        f"({sentinel_cli(config, config.addresses[0])} SENTINEL MASTERS)",
    )


def sentinel_cli(config: SentinelConfig, address: str) -> str:
    """`redis-cli` aimed at one Sentinel, with its own ACL user; never the password."""
    host, port = split_address(address)
    args = ["redis-cli", "-h", host, "-p", str(port)]
    if config.username:
        args += ["--user", config.username]
    if config.password_env or config.password_file or config.password_command:
        args.append("--askpass")
    return shlex.join(args)


def _role(target: TargetConfig, host: str, port: int, env: Mapping[str, str] | None) -> str:
    client = make_client(target, env, node=(host, port))
    try:
        reply: Any = client.execute_command("ROLE")
        return str(reply[0])
    finally:
        client.close()


def resolve_master(target: TargetConfig, env: Mapping[str, str] | None = None) -> tuple[str, int]:
    """The address of the current master, confirmed with ROLE (see the module doc)."""
    config = target.sentinel
    assert config is not None
    deadline = time.monotonic() + max(target.connect_timeout, 1.0)
    last = ""
    while True:
        address, reply = ask_sentinels(
            config,
            target.connect_timeout,
            env,
            "SENTINEL",
            "GET-MASTER-ADDR-BY-NAME",
            config.service,
        )
        if reply is None:
            raise UnknownName(
                f"Sentinel {address} does not monitor a master called {config.service!r}",
                f"{sentinel_cli(config, address)} SENTINEL MASTERS "
                "(the names it knows), then fix [target.sentinel] service",
            )
        host, port = str(reply[0]), int(reply[1])
        try:
            role = _role(target, host, port, env)
        except (redis.RedisError, RunbookError) as exc:
            role = f"unreachable ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        if role == "master":
            return host, port
        last = f"Sentinel {address} names {host}:{port}, whose ROLE is {role}"
        if time.monotonic() > deadline:
            raise TargetUnavailable(
                f"no master for {config.service}: {last}",
                "a failover may be under way: redis-runbook diagnose",
            )
        time.sleep(ROLE_RETRY_S)


def pairs(reply: Any) -> dict[str, str]:
    """A flat [field, value, ...] reply (SENTINEL MASTER, one REPLICAS entry) as a dict."""
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    items = list(reply)
    return {str(items[i]): str(items[i + 1]) for i in range(0, len(items) - 1, 2)}


@dataclass(frozen=True)
class SentinelView:
    """What one Sentinel said about the service (None fields: it did not answer)."""

    address: str
    master: dict[str, str] | None
    replicas: list[dict[str, str]]
    ckquorum: str | None
    ckquorum_ok: bool
    tilt: bool
    error: str | None = None


def view_of(
    config: SentinelConfig, address: str, timeout: float, env: Mapping[str, str] | None = None
) -> SentinelView:
    """One Sentinel's view, in one pipeline; never raises."""
    client = sentinel_client(config, address, timeout, env)
    try:
        pipe = client.pipeline(transaction=False)
        pipe.execute_command("SENTINEL", "MASTER", config.service)
        pipe.execute_command("SENTINEL", "REPLICAS", config.service)
        pipe.execute_command("SENTINEL", "CKQUORUM", config.service)
        pipe.execute_command("INFO", "sentinel")
        master, replicas, quorum, info = pipe.execute(raise_on_error=False)
    except redis.RedisError as exc:
        failed = str(exc) or type(exc).__name__
        return SentinelView(address, None, [], None, False, False, failed)
    finally:
        client.close()
    if isinstance(master, Exception):
        return SentinelView(address, None, [], None, False, False, str(master))
    quorum_ok = not isinstance(quorum, Exception)
    tilt = isinstance(info, dict) and str(info.get("sentinel_tilt", "0")) == "1"
    return SentinelView(
        address=address,
        master=pairs(master),
        replicas=[pairs(r) for r in replicas] if isinstance(replicas, list) else [],
        ckquorum=str(quorum),
        ckquorum_ok=quorum_ok,
        tilt=tilt,
    )
