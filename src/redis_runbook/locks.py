"""One operation at a time per target: a file lock on this host (flock, released by
the kernel if we die) plus, when Redis answers, a Redis key with a random token,
released only by its holder (compare-and-delete in Lua)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import redis

from redis_runbook.errors import Refused

REDIS_LOCK_KEY = "redis-runbook:lock"
_RELEASE = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
)


def _describe(holder: dict[str, Any]) -> str:
    return (
        f"{holder.get('procedure', '?')} (pid {holder.get('pid', '?')} on "
        f"{holder.get('host', '?')}, since {holder.get('started', '?')})"
    )


@contextlib.contextmanager
def file_lock(lock_dir: Path, target: str, procedure: str) -> Iterator[None]:
    """Hold `<lock_dir>/<hash of target>.lock` for the duration; Refused when another
    process holds it, naming that process."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(target.encode()).hexdigest()[:16]
    path = lock_dir / f"{name}.lock"
    handle: IO[str] = path.open("a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            try:
                holder = json.loads(handle.read() or "{}")
            except json.JSONDecodeError:
                holder = {}
            raise Refused(
                f"another redis-runbook procedure is running on {target}: {_describe(holder)}",
                f"wait for it to finish (ps -p {holder.get('pid', '?')}); "
                "redis-runbook journal shows what it did",
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(holder_info(procedure)))
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the flock


def holder_info(procedure: str) -> dict[str, Any]:
    """Who holds a lock: procedure, pid, host, start time."""
    return {
        "procedure": procedure,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


@contextlib.contextmanager
def redis_lock(client: redis.Redis | None, procedure: str, ttl_s: int) -> Iterator[None]:
    """Hold REDIS_LOCK_KEY while Redis answers (guards against a second operator on
    another host). With Redis down (client None or unreachable) only the file lock
    applies. The key expires after `ttl_s` if we die holding it."""
    token = secrets.token_hex(16)
    value = json.dumps(holder_info(procedure) | {"token": token})
    held = False
    if client is not None:
        try:
            held = bool(client.set(REDIS_LOCK_KEY, value, nx=True, ex=ttl_s))
            if not held:
                current = client.get(REDIS_LOCK_KEY)
                if current is not None:
                    try:
                        holder = json.loads(str(current))
                    except json.JSONDecodeError:
                        holder = None
                    if not isinstance(holder, dict):
                        holder = {"procedure": f"unknown (value {str(current)[:40]!r})"}
                    raise Refused(
                        f"another redis-runbook procedure holds {REDIS_LOCK_KEY}: "
                        f"{_describe(holder)}",
                        f"wait for it, or if it died: check the journal, then "
                        f"redis-cli DEL {REDIS_LOCK_KEY} (expires on its own in {ttl_s} s)",
                    )
        except redis.RedisError:
            held = False  # Redis down or refusing writes: the file lock still holds
    try:
        yield
    finally:
        if held and client is not None:
            with contextlib.suppress(redis.RedisError):
                client.eval(_RELEASE, 1, REDIS_LOCK_KEY, value)
