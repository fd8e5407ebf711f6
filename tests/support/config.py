"""The one way a test writes a CLI config file: from data, through the project's own
TOML writer (redis_runbook.config.toml), never an f-string of TOML. Tests whose point
is a hand-written or malformed text write that text themselves."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from redis_runbook.config import toml
from redis_runbook.lab.server import RedisServer


def write_config(path: Path, data: Mapping[str, Any]) -> Path:
    """Write `data` as TOML to `path`; returns `path`."""
    path.write_text(toml.dumps(data))
    return path


def merged(base: Mapping[str, Any], *overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """`base` with each override laid over it, tables merged key by key."""
    result = dict(base)
    for override in overrides:
        for key, value in (override or {}).items():
            if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
                result[key] = merged(result[key], value)
            else:
                result[key] = value
    return result


def process_service(server: RedisServer) -> dict[str, str]:
    """[service] kind `process` on the server's own data dir, redis.conf and pidfile."""
    return {
        "kind": "process",
        "data_dir": str(server.data_dir),
        "redis_conf": str(server.conf_path),
        "pid_file": str(server.pid_path),
    }
