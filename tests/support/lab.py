"""A lab (`lab.up`) as the tests use it: its status and the CLI's env for it, a
client on it, and the journal the CLI wrote."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import redis

from redis_runbook.lab.lifecycle import LabStatus

#: The `lab_env` fixture's value: the lab's status and the env pointing the CLI at it.
Lab = tuple[LabStatus, dict[str, str]]


def lab_client(status: LabStatus, **kwargs: Any) -> redis.Redis:
    """A redis-py client on the lab's server (bytes unless told otherwise)."""
    assert status.port is not None
    return redis.Redis(port=status.port, **kwargs)


def journal(env: dict[str, str]) -> list[dict[str, object]]:
    """Every entry of the journal the CLI wrote under env's state dir."""
    path = Path(env["REDIS_RUNBOOK_RUNBOOK__STATE_DIR"]) / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]
