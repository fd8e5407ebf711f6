"""estimate (issue 15 goal 3): `redis-runbook keys stats --estimate --json` ("in well
under a second on 10M keys") against the exact walk, `redis-runbook keys stats --json`,
both as whole processes, on a keyspace of N keys (10,000,000 by default) over three
categories in known proportions: 50 % `cache:*`, 30 % `bull:*`, 20 % `session:*`.

The estimate draws 2,000 random keys (RANDOMKEY, its default) and reports each
category's keys with a 95 % error bar; the walk SCANs every key. The table shows both
wall times, the time each command reports for its own work, and the keys per category:
the estimate with its bars against the exact counts (which must equal what was filled).
`redis-runbook keys stats --help` is the floor of either process: the interpreter and
the imports of the CLI, no connection.

The server is a lab redis-server filled by bench_oom's Lua loop, with maxmemory 4gb
(10M 64-byte strings take ~1.5 GB), no AOF and no RDB snapshots: the commands are
read-only, and no fork or fsync should land in a measurement.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from bench_oom import SETTINGS, cli_env, fill, write_config
from redis_runbook.lab.server import RedisServer

#: (category, key prefix, share of the keys)
SHARES = (("cache", "cache:", 0.5), ("bullmq", "bull:bench:", 0.3), ("session", "session:", 0.2))
ESTIMATE_RUNS = 3
SERVER_SETTINGS = {**SETTINGS, "maxmemory": "4gb", "appendonly": "no"}
TIMEOUT_S = 1_800.0


def run_cli(env: dict[str, str], *args: str) -> tuple[float, str]:
    """`redis-runbook ARGS` as a process that must exit 0: its wall time and stdout."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "redis_runbook", *args],
        env=env, capture_output=True, text=True, timeout=TIMEOUT_S,
        stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"redis-runbook {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return seconds, done.stdout


def counts(document: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """{category: (keys, 95 % error)} from a `keys stats --json` document (error 0
    for the walk)."""
    return {c["name"]: (c["keys"], c.get("keys_error", 0)) for c in document["categories"]}


def bench_estimate(keys: int, machine: str) -> None:
    """Fill, run the estimate a few times and the walk once, print the table."""
    filled = {name: int(keys * share) for name, _, share in SHARES}
    filled["cache"] += keys - sum(filled.values())
    with tempfile.TemporaryDirectory(prefix="rr-bench-estimate-", dir="/var/tmp") as tmp:
        server = RedisServer(Path(tmp) / "redis", settings=SERVER_SETTINGS)
        server.start()
        try:
            assert server.port is not None
            with redis.Redis(port=server.port, socket_timeout=TIMEOUT_S) as client:
                started = time.perf_counter()
                for name, prefix, _ in SHARES:
                    fill(client, prefix, filled[name])
                fill_s = time.perf_counter() - started
                assert client.dbsize() == keys
                info: Any = client.info("memory")
                memory = info["used_memory_human"]
            env = cli_env() | {"REDIS_RUNBOOK_CONFIG": str(write_config(Path(tmp), server.port))}
            start_s, _ = run_cli(env, "keys", "stats", "--help")
            rows: list[tuple[str, float, dict[str, Any]]] = []
            for run in range(1, ESTIMATE_RUNS + 1):
                seconds, output = run_cli(env, "keys", "stats", "--estimate", "--json")
                rows.append(
                    (f"`keys stats --estimate --json`, run {run}", seconds, json.loads(output))
                )
            seconds, output = run_cli(env, "keys", "stats", "--json")
            rows.append(("`keys stats --json` (the exact walk)", seconds, json.loads(output)))
        finally:
            server.stop(save=False)

    exact = counts(rows[-1][2])
    for name, count in filled.items():
        assert exact[name] == (count, 0), f"the walk counted {exact[name]} {name}, not {count}"
    estimated = [seconds for _, seconds, _ in rows[:-1]]
    today = time.strftime("%Y-%m-%d")
    print(f"## estimate: keys stats --estimate vs the walk (issue 15 goal 3) — {today}\n")
    print(
        f"{machine}. {keys:,} keys, 64-byte strings (used_memory {memory}, filled in "
        f"{fill_s:.1f} s by a Lua loop): {filled['cache']:,} `cache:*`, {filled['bullmq']:,} "
        f"`bull:*`, {filled['session']:,} `session:*`; lab redis-server, no AOF, no RDB. "
        "Whole processes, one run each (the estimate three times: each draws other keys); "
        "wall: the process; own: the `seconds` the command reports for its work. The "
        "estimate draws 2,000 random keys (its default) and gives 95 % error bars; "
        '"within bars": categories (of all configured, and keys in none) whose exact '
        f"count lies inside the estimate's bar. `redis-runbook keys stats --help` took "
        f"{start_s:.2f} s (the interpreter and the CLI's imports, no connection: the floor "
        "of either command).\n"
    )
    print("| command | wall | own | cache | bullmq | session | within bars |")
    print("|---|---|---|---|---|---|---|")
    for what, seconds, document in rows:
        found = counts(document)
        cells = [
            f"{found[name][0]:,} ± {found[name][1]:,}" if found[name][1] else f"{found[name][0]:,}"
            for name, _, _ in SHARES
        ]
        inside = sum(
            1 for name, (value, error) in found.items() if abs(value - exact[name][0]) <= error
        )
        within = f"{inside}/{len(found)}" if "estimate" in document else "-"
        print(
            f"| {what} | {seconds:.2f} s | {document['seconds']:.2f} s | "
            f"{' | '.join(cells)} | {within} |"
        )
    print(
        f"\nEstimate wall: median {statistics.median(estimated):.2f} s "
        f"({min(estimated):.2f}–{max(estimated):.2f} s); the walk: {rows[-1][1]:.1f} s, "
        f"{rows[-1][1] / statistics.median(estimated):.0f}x the estimate."
    )
