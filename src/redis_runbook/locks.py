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
from redis_runbook.service.process import pid_alive
from redis_runbook.target import client_cli

REDIS_LOCK_KEY = "redis-runbook:lock"
_RELEASE = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
)
_TAKE_OVER = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) end return false"
)


def _abandoned(holder: dict[str, Any]) -> bool:
    """True when the holder ran on this host and its process is gone: it died, or
    the key came back with the data (an RDB or a backup taken while it was held)."""
    pid = holder.get("pid")
    return (
        holder.get("host") == socket.gethostname() and isinstance(pid, int) and not pid_alive(pid)
    )


def _describe(holder: dict[str, Any]) -> str:
    return (
        f"{holder.get('procedure', '?')} (pid {holder.get('pid', '?')} on "
        f"{holder.get('host', '?')}, since {holder.get('started', '?')})"
    )


def _lock_path(lock_dir: Path, target: str) -> Path:
    name = hashlib.sha256(target.encode()).hexdigest()[:16]
    return lock_dir / f"{name}.lock"


def _busy(handle: IO[str], target: str) -> Refused:
    handle.seek(0)
    try:
        holder = json.loads(handle.read() or "{}")
    except json.JSONDecodeError:
        holder = {}
    return Refused(
        f"another redis-runbook procedure is running on {target}: {_describe(holder)}",
        f"wait for it to finish (ps -p {holder.get('pid', '?')}); "
        "redis-runbook journal shows what it did",
    )


def refuse_if_locked(lock_dir: Path, target: str) -> None:
    """Refused, naming the holder, when a procedure holds the file lock of `target`
    now: checked before planning, so that a procedure which has Redis down says
    so instead of the next command reporting Redis unreachable."""
    path = _lock_path(lock_dir, target)
    if not path.exists():
        return
    with path.open("r", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(handle, target) from None


@contextlib.contextmanager
def file_lock(lock_dir: Path, target: str, procedure: str) -> Iterator[None]:
    """Hold `<lock_dir>/<hash of target>.lock` for the duration; Refused when another
    process holds it, naming that process."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    handle: IO[str] = _lock_path(lock_dir, target).open("a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(handle, target) from None
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


def _holder(current: object) -> dict[str, Any]:
    try:
        holder = json.loads(str(current))
    except json.JSONDecodeError:
        holder = None
    if not isinstance(holder, dict):
        return {"procedure": f"unknown (value {str(current)[:40]!r})"}
    return holder


def _acquire(client: redis.Redis, value: str, ttl_s: int) -> bool:
    """SET NX; else take over an abandoned lock atomically; else Refused."""
    if client.set(REDIS_LOCK_KEY, value, nx=True, ex=ttl_s):
        return True
    current: Any = client.get(REDIS_LOCK_KEY)
    if current is None:  # released between the two calls
        return bool(client.set(REDIS_LOCK_KEY, value, nx=True, ex=ttl_s))
    holder = _holder(current)
    if _abandoned(holder) and client.eval(_TAKE_OVER, 1, REDIS_LOCK_KEY, current, value, ttl_s):
        return True
    left: Any = client.ttl(REDIS_LOCK_KEY)
    expiry = f"expires on its own in {left} s" if int(left) >= 0 else "has no expiry"
    raise Refused(
        f"another redis-runbook procedure holds {REDIS_LOCK_KEY}: {_describe(holder)}",
        f"wait for it, or if it died: check the journal, then {client_cli(client)} DEL "
        f"{REDIS_LOCK_KEY} "
        f"({expiry})",
    )


def clear_foreign_lock(client: redis.Redis) -> str | None:
    """Delete a REDIS_LOCK_KEY that came back with restored data (an RDB carries the
    lock of the procedure that was running when it was written, e.g. `backup create`
    during its BGSAVE); returns who held it, or None when there was none. Only for
    a server that has just loaded data nobody else can have locked yet."""
    current: Any = client.get(REDIS_LOCK_KEY)
    if current is None:
        return None
    holder = _holder(current)
    if holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        return None  # our own
    client.eval(_RELEASE, 1, REDIS_LOCK_KEY, current)
    return _describe(holder)


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
            held = _acquire(client, value, ttl_s)
        except redis.RedisError:
            held = False  # Redis down or refusing writes: the file lock still holds
    try:
        yield
    finally:
        if held and client is not None:
            with contextlib.suppress(redis.RedisError):
                client.eval(_RELEASE, 1, REDIS_LOCK_KEY, value)
