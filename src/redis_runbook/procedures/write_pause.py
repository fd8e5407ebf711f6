"""Holding writes off an old master while a switchover runs, without outliving the tool.

`CLIENT PAUSE <ms> WRITE` ends by itself when its timeout passes. One long pause (the
whole switch's worst case) would block every write, BullMQ's scripts included, for
minutes should the tool die mid-switch. So the pause is taken in short leases
(`LEASE_MS`) and renewed from a background thread every `RENEW_S` while the switch is
in progress: a tool killed with SIGKILL frees writes within one lease. Stopping the
renewal and `CLIENT UNPAUSE` end it at once.

`disconnect_clients` disconnects an old master's application clients so that they
reconnect through Sentinel, by id, leaving Sentinel's own links (named
`sentinel-<id>-cmd` / `sentinel-<id>-pubsub`, or a lib-name saying sentinel) and the
tool's connection alone. Replicas and Pub/Sub clients are not `TYPE normal`."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping

import redis

from redis_runbook.config import Config
from redis_runbook.errors import RunbookError
from redis_runbook.replies import parse_client_list, text
from redis_runbook.target import make_client
from redis_runbook.target.sentinel import split_address
from redis_runbook.target.topology import node_command

LEASE_MS = 2000
RENEW_S = 0.25
SENTINEL_NAME_PREFIX = "sentinel-"


class WritePause:
    """`CLIENT PAUSE WRITE` on one node in renewed `LEASE_MS` leases, for at most
    `max_s` seconds in all (a bound should the caller never stop it).

    `start()` takes the first lease (raises when the node does not answer); a daemon
    thread renews it until `stop()`. `lapsed_s` is the longest stretch during which
    the lease may have run out between two renewals (the process was stalled):
    writes acknowledged then are not held back."""

    def __init__(
        self, config: Config, address: str, max_s: float, env: Mapping[str, str] | None = None
    ) -> None:
        self.config = config
        self.address = address
        self.max_s = max_s
        self.env = env
        self.lapsed_s = 0.0
        self.expired = False  # max_s passed: renewals stopped by themselves
        self._client: redis.Redis | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._last_sent = 0.0
        self._until = 0.0

    @property
    def active(self) -> bool:
        """Renewals are running."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Take the first lease and start renewing it."""
        self._client = make_client(self.config.target, self.env, node=split_address(self.address))
        self._until = time.monotonic() + self.max_s
        try:
            self._lease()
        except BaseException:
            self._client.close()
            self._client = None
            raise
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._renew, name=f"write-pause {self.address}", daemon=True
        )
        self._thread.start()

    def _lease(self) -> None:
        assert self._client is not None
        sent = time.monotonic()
        self._client.execute_command("CLIENT", "PAUSE", LEASE_MS, "WRITE")
        if self._last_sent:
            # The previous lease ran to at least _last_sent + LEASE; this one began at
            # the latest now: a gap longer than a lease may have let writes through.
            gap = time.monotonic() - self._last_sent - LEASE_MS / 1000
            self.lapsed_s = max(self.lapsed_s, gap)
        self._last_sent = sent

    def _renew(self) -> None:
        while not self._stop.wait(RENEW_S):
            if time.monotonic() > self._until:
                self.expired = True
                return
            with contextlib.suppress(redis.RedisError):  # retried on the next round
                self._lease()

    def stop(self, unpause: bool = True) -> None:
        """Stop renewing; with `unpause`, lift the pause now (else it ends with the
        current lease). Never raises; safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.config.target.command_timeout + 5)
            self._thread = None
        if self._client is not None:
            self._client.close()
            self._client = None
        if unpause:
            with contextlib.suppress(redis.RedisError, RunbookError):
                node_command(self.config, self.address, "CLIENT", "UNPAUSE", env=self.env)


def disconnect_clients(
    config: Config, address: str, env: Mapping[str, str] | None = None
) -> tuple[int, int]:
    """`CLIENT KILL ID` every normal client of the node except Sentinel's links and
    this connection; returns (disconnected, Sentinel links kept). Raises when the
    node does not answer."""
    client = make_client(config.target, env, node=split_address(address))
    try:
        pipe = client.pipeline(transaction=False)
        pipe.execute_command("CLIENT", "ID")
        pipe.execute_command("CLIENT", "LIST", "TYPE", "normal")
        own, listing = pipe.execute()
        rows = parse_client_list(text(listing))
        kept = [
            r
            for r in rows
            if r.get("name", "").startswith(SENTINEL_NAME_PREFIX)
            or "sentinel" in r.get("lib-name", "").lower()
        ]
        victims = [r["id"] for r in rows if r not in kept and r.get("id") and r["id"] != str(own)]
        if victims:
            pipe = client.pipeline(transaction=False)
            for victim in victims:
                pipe.execute_command("CLIENT", "KILL", "ID", victim)
            killed = sum(int(n) for n in pipe.execute(raise_on_error=False) if isinstance(n, int))
        else:
            killed = 0
        return killed, len(kept)
    finally:
        client.close()
