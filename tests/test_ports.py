"""Ports that hold on a busy machine (issue 11, "tests that hold under load"): a
server's port is never one the kernel hands out for outgoing connections, and a
start whose port is taken for a moment retries instead of failing."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import redis

from redis_runbook.lab.faults_base import attempt_start
from redis_runbook.lab.server import RedisServer
from redis_runbook.lab.topology import SentinelProcess
from redis_runbook.ports import free_port
from tests.support.servers import RedisFactory, plain_client


def ephemeral_range() -> tuple[int, int]:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return int(low), int(high)


def test_free_ports_are_outside_the_ephemeral_range() -> None:
    """An outgoing connection (any client on the machine) takes its local port from
    the ephemeral range: a stopped server's port there can be gone before it restarts."""
    low, high = ephemeral_range()
    ports = {free_port() for _ in range(200)}
    assert not [p for p in ports if low <= p <= high]
    assert 6379 not in ports
    assert len(ports) > 150  # picked at random, not one after the other


def test_a_restart_on_a_port_taken_for_a_moment_retries(
    tmp_path: Path, redis_factory: RedisFactory
) -> None:
    """The server keeps its port across a restart (configs point at it): when
    something holds the port for a moment, the start waits it out."""
    server = redis_factory()
    port = server.port
    assert port is not None
    server.stop()
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", port))
    holder.listen()
    released = threading.Event()

    def release() -> None:
        released.wait(30)
        holder.close()

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    again = RedisServer(server.workdir, port=port)
    try:
        threading.Timer(0.5, released.set).start()
        again.start()
    finally:
        released.set()
        thread.join()
    assert again.port == port
    with plain_client(again) as client:
        assert client.ping()
    assert "Address already in use" in again.log_path.read_text()
    again.kill()


def held_for_a_moment(port: int, seconds: float = 0.5) -> threading.Thread:
    """Listen on `port` now and let go after `seconds` (in a thread)."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", port))
    holder.listen()
    thread = threading.Timer(seconds, holder.close)
    thread.start()
    return thread


def test_a_fault_restart_on_a_port_taken_for_a_moment_logs_the_fault_not_the_port(
    redis_factory: RedisFactory,
) -> None:
    """File faults restart the server on its redis.conf to let it fail for real: a
    port held for a moment must not become the failure (rdb-truncate was once
    diagnosed from `bind: Address already in use`)."""
    server = redis_factory()
    assert server.port is not None
    server.stop()
    thread = held_for_a_moment(server.port)
    try:
        assert attempt_start(server) == "running"
    finally:
        thread.join()
    assert "Address already in use" in server.log_path.read_text()
    server.kill()


def test_a_sentinel_whose_port_was_taken_moves_to_another(tmp_path: Path) -> None:
    sentinel = SentinelProcess(tmp_path / "sentinel")
    taken = sentinel.port
    sentinel.write_conf(free_port())
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", taken))
    holder.listen()
    try:
        sentinel.start(retry_port=True)
    finally:
        holder.close()
    try:
        assert sentinel.port != taken
        assert redis.Redis(port=sentinel.port).ping()
    finally:
        sentinel.kill()
