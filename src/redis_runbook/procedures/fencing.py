"""Before a replica is promoted without Sentinel, the old master must be unable to
take writes; after any role change, the roles must survive a restart (issue 12
items 8 and 9).

A master that accepts connections but does not answer is hung, not dead: when it
runs again it is still a master and its clients' writes land there (split brain).
So the promotion waits for a fence: the old master stopped through its `[service]`
(`Service.fence`: killed, never continued first) and its port refusing connections,
or the operator's word that it is gone — which does not hold while its port still
accepts connections.

Roles live in memory until written: `CONFIG REWRITE` on every node whose role
changed, where the server has a config file (`INFO server` `config_file`); else the
exact line to set is named."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from enum import StrEnum

import redis

from redis_runbook.config import Config
from redis_runbook.errors import RunbookError
from redis_runbook.procedures.engine import StepFailed
from redis_runbook.replies import info_fields
from redis_runbook.service import Service
from redis_runbook.target.sentinel import split_address
from redis_runbook.target.topology import node_command

FENCE_TIMEOUT_S = 10.0
POLL_S = 0.05


class Reach(StrEnum):
    """What a TCP connection to a node's port says."""

    ACCEPTS = "accepts connections"
    REFUSED = "refuses connections (nothing listens on its port)"
    SILENT = "does not answer a connection (host down or cut off)"


def reach(address: str, timeout: float) -> Reach:
    """Connect to the port, send nothing."""
    try:
        with socket.create_connection(split_address(address), timeout=timeout):
            return Reach.ACCEPTS
    except ConnectionRefusedError:
        return Reach.REFUSED
    except OSError:
        return Reach.SILENT


def describe_unanswering(address: str, error: str | None, timeout: float) -> str:
    """The plan's note on a master that did not answer ROLE."""
    state = reach(address, timeout)
    if state is Reach.ACCEPTS:
        return (
            f"the master {address} accepts connections but does not answer ({error}): it is "
            "hung, not dead; it must be fenced before a replica is promoted"
        )
    return f"the master {address} does not answer ({error}) and {state.value}"


@dataclass
class Fence:
    """Fence the old master before the promotion (a plan step)."""

    config: Config
    old: str
    service: Service
    gone: bool = False  # the operator says it is gone: nothing to stop

    def run(self) -> str:
        """StepFailed unless the old master can take no more writes."""
        timeout = self.config.target.connect_timeout
        before = reach(self.old, timeout)
        if self.gone:
            if before is Reach.ACCEPTS:
                raise StepFailed(
                    f"{self.old} accepts connections: it is not gone (hung?); nothing was promoted",
                    "stop it through its [service] (failover without --old-master-gone) "
                    "or by hand, then run failover again",
                )
            return f"the operator says {self.old} is gone; it {before.value}"
        try:
            said = self.service.fence()
        except RunbookError as exc:
            raise StepFailed(
                f"{self.old} was not fenced ({self.service.describe()}: {exc.message}); "
                "nothing was promoted",
                "fix [service] or stop it by hand; if the host is gone for good: "
                "redis-runbook failover --to HOST:PORT --old-master-gone",
            ) from None
        deadline = time.monotonic() + FENCE_TIMEOUT_S
        while reach(self.old, timeout) is Reach.ACCEPTS:
            if time.monotonic() > deadline:
                raise StepFailed(
                    f"{self.service.describe()}: {said}, but {self.old} still accepts "
                    f"connections after {FENCE_TIMEOUT_S:g} s ([service] may not run this "
                    "server); nothing was promoted",
                    "stop the old master by hand (kill -9 its redis-server), then run "
                    "failover again",
                )
            time.sleep(POLL_S)
        how = (
            "accepts connections but does not answer (hung)"
            if before is Reach.ACCEPTS
            else before.value
        )
        return f"{self.old} {how}: {self.service.describe()} {said}; its port refuses connections"


def replicaof_line(master: str | None) -> str:
    """The config line a node needs: `replicaof H P`, or none for a master."""
    if master is None:
        return "no `replicaof` (nor `slaveof`) line, and no --replicaof argument"
    host, port = split_address(master)
    return f"`replicaof {host} {port}`"


def persist_roles(config: Config, roles: dict[str, str | None]) -> str:
    """CONFIG REWRITE on every node in `roles` (address -> its master, None for the
    master) that has a config file; the line to set for the others. StepFailed when
    a rewrite is refused: a restart would bring the old role back."""
    written, by_hand, failed = [], [], []
    for address, master in roles.items():
        line = replicaof_line(master)
        try:
            conf = info_fields(node_command(config, address, "INFO", "server")).get(
                "config_file", ""
            )
            if not conf:
                by_hand.append(f"{address} has no config file: start it with {line}")
                continue
            node_command(config, address, "CONFIG", "REWRITE")
            written.append(f"{address} ({conf})")
        except redis.ResponseError as exc:
            failed.append(f"{address}: CONFIG REWRITE refused ({exc}): set {line} in its config")
        except (redis.RedisError, RunbookError):
            by_hand.append(f"{address} does not answer: before it starts again, set {line}")
    text = f"CONFIG REWRITE on {', '.join(written) or 'none'}"
    if by_hand:
        text += "; WARNING " + "; ".join(by_hand)
    if failed:
        raise StepFailed(
            f"{text}; " + "; ".join(failed),
            "fix the config files as named (a restart would bring the old role back)",
        )
    return text


def stopped_master_line(old: str, new: str, service: Service) -> str:
    """What to change before the fenced old master runs again."""
    return (
        f"before starting {old} again ({service.describe()}), set {replicaof_line(new)} in "
        "its config: it would start as a master (split brain)"
    )
