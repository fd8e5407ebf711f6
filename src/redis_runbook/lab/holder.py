"""`python -m redis_runbook.lab.holder CONFIG COUNT SECONDS`: hold COUNT clients
blocked in BLPOP for SECONDS, in a process of its own, so that `lab break
blocked-clients` can return while the clients stay blocked. Exits when the BLPOPs
time out (or the server goes away)."""

from __future__ import annotations

import sys
from pathlib import Path

import redis

from redis_runbook.config import load_config
from redis_runbook.target import make_client

BLOCKED_KEY = "fault:blocked:queue"
# Not the tool's own client name: `clients kill` refuses redis-runbook connections,
# and these are the application's stuck clients that the operator should be able to kill.
BLOCKED_CLIENT_NAME = "lab-blocked"


def hold(config: Path, count: int, seconds: float) -> int:
    """Block `count` connections in BLPOP, wait for their replies, return 0."""
    target = load_config(config, env={}).config.target
    update = {"command_timeout": seconds + 10, "client_name": BLOCKED_CLIENT_NAME}
    client = make_client(target.model_copy(update=update))
    connections = []
    try:
        for _ in range(count):
            connection = client.connection_pool.make_connection()
            connection.connect()
            connection.send_command("BLPOP", BLOCKED_KEY, int(seconds))
            connections.append(connection)
        for connection in connections:
            connection.read_response()
    except redis.RedisError:
        return 1
    finally:
        for connection in connections:
            connection.disconnect()
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(hold(Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
