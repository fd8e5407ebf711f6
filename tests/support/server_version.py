"""Facts about the redis-server this test session runs on (`./run test` runs one
session per version: 7.0, 8.0, the newest 8.x). Tests ask these, never a constant."""

from __future__ import annotations

import functools
import subprocess

from redis_runbook.persistence.rdb import max_rdb_version_of, parse_release


@functools.cache
def server_version() -> str:
    """`7.0.15` from the installed `redis-server --version`."""
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, check=True)
    return out.stdout.split("v=", 1)[1].split()[0]


def release() -> tuple[int, int]:
    """(major, minor) of the installed server."""
    parsed = parse_release(server_version())
    assert parsed is not None
    return parsed


def newest_rdb_version() -> int:
    """The RDB version the installed server writes (and the newest it loads)."""
    newest = max_rdb_version_of(server_version())
    assert newest is not None
    return newest


def too_new_rdb_version() -> int:
    """An RDB version the installed server cannot load."""
    return newest_rdb_version() + 1


def config_error_lines() -> tuple[str, ...]:
    """What the server prints when redis.conf holds an unknown directive: 7.x's
    FATAL CONFIG FILE ERROR block, or Redis 8's unresolved-configuration abort
    (unknown names are kept as possible module settings until then)."""
    if release() < (8, 0):
        return ("FATAL CONFIG FILE ERROR", "Bad directive or wrong number of arguments")
    return (
        "Unresolved Configuration(s) Detected",
        "Module Configuration detected without loadmodule directive",
    )
