"""restart (issue 15 goal 1): `redis-runbook --yes recover restart` on a keyspace of
millions of keys, against the floor of any restart: the same stop (SHUTDOWN SAVE,
waited for) and start (until Redis answers with its data loaded) done by hand.

The tool adds its plan, lock, journal, the role check and its evidence: `INFO
keyspace` before and after (O(1)), and with `--verify-categories` a SCAN walk of
every key before and after (what every restart did before issue 15). The lab
Redis (process backend, AOF everysec with an RDB preamble) holds the keys as 64-byte
strings and small hashes in the seed's categories."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from redis_runbook import lab
from redis_runbook.bgsave import wait_no_rewrite
from redis_runbook.lab.lifecycle import lab_server

FILL_BATCH = 10_000
FILL = """
local prefix, first, last = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
for i = first, last do
  if i % 4 == 0 then
    redis.call('HSET', prefix .. i, 'name', 'job', 'attemptsMade', '0')
  else
    redis.call('SET', prefix .. i, string.rep('v', 64))
  end
end
return last - first + 1
"""
PREFIXES = ("cache:", "bull:bench:", "session:")
STEP_TIMEOUT_S = 1_800.0


def fill(client: redis.Redis, keys: int) -> None:
    """`keys` keys spread over the categories, by a Lua loop (fast, no round trips)."""
    per = keys // len(PREFIXES)
    for prefix in PREFIXES:
        for first in range(0, per, FILL_BATCH):
            client.eval(FILL, 0, prefix, first, min(first + FILL_BATCH, per) - 1)


def by_hand(directory: Path) -> float:
    """The floor: SHUTDOWN SAVE, waited for; start; until loaded."""
    server = lab_server(directory)
    started = time.perf_counter()
    server.stop(save=True, timeout=STEP_TIMEOUT_S)
    server.start(timeout=STEP_TIMEOUT_S)
    return time.perf_counter() - started


def whole_command(env: dict[str, str], *flags: str) -> float:
    """`redis-runbook --yes recover restart FLAGS` as a process; it must exit 0."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "redis_runbook", "--yes", "recover", "restart", *flags],
        env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT_S,
        stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"recover restart {' '.join(flags)} failed:\n{done.stdout}{done.stderr}")
    return seconds


def bench_restart(keys: int, machine: str) -> None:
    """Fill, then restart three ways; print the table."""
    with tempfile.TemporaryDirectory(prefix="rr-bench-restart-", dir="/var/tmp") as tmp:
        directory = Path(tmp) / "lab"
        status = lab.up(directory, maxmemory="8gb")
        assert status.port is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_RUNBOOK_")}
        env |= {
            "REDIS_RUNBOOK_CONFIG": str(status.config_path),
            "REDIS_RUNBOOK_RUNBOOK__STATE_DIR": str(Path(tmp) / "state"),
        }
        try:
            with redis.Redis(port=status.port, socket_timeout=STEP_TIMEOUT_S) as client:
                client.flushall()
                fill(client, keys)
                wait_no_rewrite(client, STEP_TIMEOUT_S)
                total = int(client.dbsize())
                memory = client.info("memory")["used_memory_human"]
            rows = [
                ("by hand: SHUTDOWN SAVE, start, until loaded (the floor)", by_hand(directory)),
                ("`redis-runbook --yes recover restart`", whole_command(env)),
                (
                    "`redis-runbook --yes recover restart --verify-categories` (two walks)",
                    whole_command(env, "--verify-categories"),
                ),
            ]
        finally:
            lab_server(directory).stop(save=False, timeout=STEP_TIMEOUT_S)
    floor = rows[0][1]
    print(f"## restart (issue 15 goal 1) — {time.strftime('%Y-%m-%d')}\n")
    print(
        f"{machine}. {total:,} keys ({memory} used_memory; strings and small hashes under "
        "cache:, bull:, session:), the lab Redis: AOF everysec with an RDB preamble. One run "
        "each, in this order.\n"
    )
    print("| restart | wall time | vs the floor |")
    print("|---|---|---|")
    for what, seconds in rows:
        print(f"| {what} | {seconds:.1f} s | {seconds / floor:.2f}x |")
