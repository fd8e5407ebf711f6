"""ping_latency measures the PING on an established connection, never the connection
handshake (issue 12 item 13): on a busy host the monitor's own handshake took longer
than the latency thresholds and `ping_latency` alerts fired while Redis answered PING
at once.

The slow handshake is made for real by a TCP relay in front of a real Redis that holds
the first reply of every connection (the handshake's) and passes everything after it
through at once; a relay that holds every reply shows that a slow PING still counts."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from redis_runbook.checks import run_health
from redis_runbook.config import Band, Config, RunbookConfig, TargetConfig, Thresholds
from redis_runbook.config.monitoring import AlertsConfig, MonitorConfig, WebhookConfig
from redis_runbook.lab.server import RedisServer
from redis_runbook.monitoring.monitor import Monitor
from redis_runbook.status import CheckResult, Status
from tests.support.peers import WebhookPeer, running, start_webhook

#: Far above what a PING through the relay takes, even on a loaded machine.
BANDS = {"latency_ms": Band(warning=1000, critical=2000)}
HOLD_SECONDS = 4.0  # twice the critical threshold
CONNECT_TIMEOUT = 20.0  # the held handshake fits well within it


@dataclass
class Relay:
    """127.0.0.1:port -> the Redis port. Holds the first reply of each connection
    (or every reply, `hold_every`) for `hold` seconds."""

    upstream: int
    hold: float
    hold_every: bool = False
    listener: socket.socket = field(init=False)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))  # bound here: no port race
        self.listener.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.listener.getsockname()[1])

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, replies: bool) -> None:
        first = True
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if replies and (first or self.hold_every):
                    self.stop.wait(self.hold)
                first = False
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


@pytest.fixture
def hook() -> Iterator[WebhookPeer]:
    yield from running(start_webhook())


def through(relay: Relay) -> Config:
    """The server reached through the relay, with thresholds far above a relayed PING."""
    target = {"url": f"redis://127.0.0.1:{relay.port}/0", "connect_timeout": CONNECT_TIMEOUT}
    return Config(
        target=TargetConfig.model_validate(target), thresholds=Thresholds.model_validate(BANDS)
    )


def ping_latency(config: Config) -> CheckResult:
    [result] = [c for c in run_health(config, env={}).checks if c.name == "ping_latency"]
    return result


def test_a_slow_handshake_is_not_ping_latency(redis_server: RedisServer) -> None:
    assert redis_server.port is not None
    relay = Relay(redis_server.port, HOLD_SECONDS)
    try:
        result = ping_latency(through(relay))
    finally:
        relay.close()
    assert result.status is Status.OK, result.summary
    assert result.summary.startswith("PING answered in ")
    assert "handshake waited" in result.summary  # named, not counted


def test_a_slow_ping_is_still_critical(redis_server: RedisServer) -> None:
    assert redis_server.port is not None
    relay = Relay(redis_server.port, HOLD_SECONDS, hold_every=True)
    try:
        result = ping_latency(through(relay))
    finally:
        relay.close()
    assert result.status is Status.CRITICAL, result.summary


def test_the_monitor_sends_no_latency_alert_for_its_own_handshake(
    redis_server: RedisServer, tmp_path: Path, hook: WebhookPeer
) -> None:
    assert redis_server.port is not None
    relay = Relay(redis_server.port, HOLD_SECONDS)
    try:
        config = through(relay).model_copy(
            update={
                "runbook": RunbookConfig(state_dir=tmp_path / "state"),
                "monitor": MonitorConfig(queue_checks=False),
                "alerts": AlertsConfig(webhooks=[WebhookConfig(name="ops", url=hook.url())]),
            }
        )
        with Monitor(config, env={}) as monitor:
            reports = [monitor.cycle() for _ in range(2)]
    finally:
        relay.close()
    for report in reports:
        [latency] = [o for o in report.observations if o.name == "redis:ping_latency"]
        assert latency.status is Status.OK, latency.summary
    assert [p["key"] for p in hook.inbox.posts if "latency" in p["key"]] == []
