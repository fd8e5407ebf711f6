"""`workers verify` against real Node BullMQ v5 workers: consuming, none, wedged
(connected but every slot busy), paused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from redis_runbook.lab.server import RedisServer
from tests.conftest import plain_client
from tests.helpers import run_cli
from tests.node import NodeLauncher


def env_for(tmp_path: Path, server: RedisServer) -> dict[str, str]:
    path = tmp_path / "rr.toml"
    path.write_text(f'[target]\nurl = "{server.target().url}"\n')
    return {"REDIS_RUNBOOK_CONFIG": str(path)}


def verify(env: dict[str, str], *extra: str) -> tuple[int, dict[str, dict[str, Any]]]:
    result = run_cli("--json", "workers", "verify", "--timeout", "3", "--sample", "0.5",
                     *extra, env=env)  # fmt: skip
    document = json.loads(result.stdout)
    return result.returncode, {q["queue"]: q for q in document["queues"]}


def test_verdicts_for_consuming_absent_wedged_and_paused_workers(
    tmp_path: Path, node: NodeLauncher, redis_server: RedisServer
) -> None:
    at = redis_server.target().url
    for queue in ("live", "orphaned", "stuck", "held"):
        node.run("producer.js", {"queue": queue, "count": 2, "jobIdPrefix": f"{queue}-",
                                 "data": {"delayMs": 60_000 if queue == "stuck" else 0}},
                 redis_url=at)  # fmt: skip
    live = node("worker.js", {"queue": "live"}, redis_url=at)
    live.wait_ready()
    busy = node("worker.js", {"queue": "stuck", "concurrency": 1}, redis_url=at)
    busy.wait_event("active", 10)
    node.run("admin.js", {"action": "pause", "queue": "held"}, redis_url=at)

    code, queues = verify(env_for(tmp_path, redis_server))
    assert queues["live"]["verdict"] == "processing"
    assert queues["live"]["canary_ms"] is not None
    assert queues["orphaned"]["verdict"] == "no-workers"
    assert queues["orphaned"]["workers"] == 0
    assert queues["stuck"]["verdict"] == "wedged"  # connected, its only slot busy
    assert queues["stuck"]["workers"] == 1
    assert queues["held"]["verdict"] == "cannot-verify"
    assert code == 2
    client = plain_client(redis_server)
    leftovers = [k for k in client.scan_iter("bull:*:canary-*") if not k.endswith(":logs")]
    assert leftovers == []  # canaries that timed out were removed
    assert client.llen("bull:orphaned:wait") == 2  # the real jobs are untouched

    code, queues = verify(env_for(tmp_path, redis_server), "--queue", "live", "--passive")
    assert code == 0
    assert queues["live"]["canary_ms"] is None
    live.terminate()
    busy.kill()
