"""Free TCP ports on loopback for the servers the tool and its lab start (throwaway
drill servers, lab servers, test peers), chosen so that a port cannot be taken by
a client between the pick and the server's bind."""

from __future__ import annotations

import random
import socket
from pathlib import Path

#: Ports the lab never hands out: Redis, Sentinel, PostgreSQL, the exporter.
RESERVED_PORTS = frozenset({6379, 26379, 5432, 9121})
#: Below the ephemeral range, above the well-known and most registered service ports.
PORT_FLOOR = 10000
_random = random.SystemRandom()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def port_free(port: int) -> bool:
    """True when nothing holds `port` on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, chosen at random
    below the kernel's ephemeral range: outgoing connections (and `bind(0)`) take
    their ports from that range, so no client can take a stopped server's port
    before it restarts. Never 6379 (nor the other RESERVED_PORTS)."""
    low, _high = _ephemeral_range()
    if low - PORT_FLOOR < 1000:  # an unusual range: fall back on the kernel's pick
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            if port not in RESERVED_PORTS:
                return port
    while True:
        port = _random.randrange(PORT_FLOOR, low)
        if port not in RESERVED_PORTS and port_free(port):
            return port
