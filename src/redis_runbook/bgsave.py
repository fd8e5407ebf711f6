"""BGSAVE and wait for it by polling INFO persistence, never a blocking SAVE: a
multi-GB dataset takes longer than any command timeout to save, and a client that
gives up does not stop the save. Used by `backup create` and by the service
managers that save before they stop Redis. The same polling waits out an AOF
rewrite (`wait_no_rewrite`) for the AOF copy, the throwaway AOF builder and the lab."""

from __future__ import annotations

import time

import redis

from redis_runbook.errors import RunbookError
from redis_runbook.replies import parse_info

POLL_S = 0.05
SAVE_FAILED_HINT = "read the Redis log (redis-runbook diagnose); check free disk in the data dir"
#: A pessimistic write rate for a first save whose duration is not known yet.
MIN_SAVE_RATE = 20 * 1024 * 1024


class SaveFailed(RunbookError):
    """BGSAVE was refused, failed, or did not finish by its deadline."""

    default_hint = SAVE_FAILED_HINT


def read_info(client: redis.Redis, section: str) -> dict[str, str]:
    """INFO <section> as text fields."""
    return parse_info(str(client.execute_command("INFO", section)))


def save_deadline(client: redis.Redis) -> float:
    """Seconds to allow a save of this dataset: four times the last BGSAVE, or
    used_memory at 20 MB/s, and never under a minute."""
    persistence, memory = read_info(client, "persistence"), read_info(client, "memory")
    last = max(int(persistence.get("rdb_last_bgsave_time_sec", "-1") or -1), 0)
    used = int(memory.get("used_memory", "0") or 0)
    return max(60.0, 4.0 * last, used / MIN_SAVE_RATE)


def _saves(info: dict[str, str]) -> tuple[int, int]:
    return int(info.get("rdb_saves", "0") or 0), int(info.get("rdb_last_save_time", "0") or 0)


def _wait_idle(client: redis.Redis, deadline: float, timeout: float) -> None:
    while read_info(client, "persistence").get("rdb_bgsave_in_progress") == "1":
        if time.monotonic() > deadline:
            raise SaveFailed(f"the BGSAVE in progress did not finish within {timeout:g} s")
        time.sleep(POLL_S)


def bgsave_and_wait(client: redis.Redis, timeout: float, *, fresh: bool = False) -> str:
    """Start a BGSAVE and poll INFO persistence until it finished with
    `rdb_last_bgsave_status:ok` and the save counter (or LASTSAVE) advanced.
    A BGSAVE already in progress is joined, or with `fresh` (every write up to now
    must be in the file) waited out and followed by a new one. Returns one
    sentence; SaveFailed on failure or at the deadline."""
    deadline = time.monotonic() + timeout
    if fresh:
        _wait_idle(client, deadline, timeout)
    before = read_info(client, "persistence")
    joined = before.get("rdb_bgsave_in_progress") == "1"
    if not joined:
        try:
            client.execute_command("BGSAVE", "SCHEDULE")
        except redis.ResponseError as exc:
            if "in progress" not in str(exc):
                raise SaveFailed(f"BGSAVE refused: {exc}") from None
            joined = True
    saves, lastsave = _saves(before)
    while True:
        now = read_info(client, "persistence")
        new_saves, new_lastsave = _saves(now)
        # rdb_saves counts a BGSAVE when it starts: a joined one is counted already.
        advanced = joined or (new_saves > saves if "rdb_saves" in now else new_lastsave > lastsave)
        if now.get("rdb_bgsave_in_progress") == "0" and advanced:
            if now.get("rdb_last_bgsave_status") != "ok":
                raise SaveFailed("BGSAVE failed (rdb_last_bgsave_status:err)")
            how = "joined the BGSAVE in progress" if joined else "BGSAVE"
            return f"{how}: finished ok (lastsave {new_lastsave})"
        if time.monotonic() > deadline:
            raise SaveFailed(f"BGSAVE did not finish within {timeout:g} s")
        time.sleep(POLL_S)


class RewriteTimeout(RunbookError):
    """An AOF rewrite was still in progress or scheduled at the deadline."""


def aof_rewriting(info: dict[str, str]) -> bool:
    """True while INFO persistence says an AOF rewrite is in progress or scheduled."""
    return "1" in (info.get("aof_rewrite_in_progress"), info.get("aof_rewrite_scheduled"))


def wait_no_rewrite(client: redis.Redis, timeout: float) -> tuple[float, dict[str, str]]:
    """Poll INFO persistence until no AOF rewrite is in progress or scheduled.
    Returns the seconds waited and the last fields read; RewriteTimeout at the
    deadline."""
    started = time.monotonic()
    while aof_rewriting(info := read_info(client, "persistence")):
        if time.monotonic() - started > timeout:
            raise RewriteTimeout(f"an AOF rewrite was still running after {timeout:g} s")
        time.sleep(POLL_S)
    return time.monotonic() - started, info
