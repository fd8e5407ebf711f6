"""oom benchmark (seed §3.2): purge `cache:*` from a keyspace that also holds as
many `bull:*` / `session:*` keys.

- ours, in-process: `keyspace_purge.purge()` — SCAN MATCH COUNT 1000 + UNLINK
  batches of 500, the next SCAN in flight while the last batch is checked;
- ours, whole process: `redis-runbook --yes keys purge --category cache` (the plan
  also walks the whole keyspace before and after, to count keys per category);
- the seed: `redis-cli --scan --pattern 'cache:*' | xargs redis-cli DEL` in bash
  (its `docker compose exec redis` prefixes removed, like the health benchmark);
- the floor of a server-side purge: a Lua script (EVALSHA) called in a loop with the
  cursor, each call one `SCAN cursor MATCH cache:* COUNT n` and an UNLINK of what it
  returned, so each call blocks Redis for a bounded time (n slots visited). It makes
  no protection check: the product must check every key against the other
  categories' patterns, the BullMQ prefixes and its own keys before deleting it,
  which is why its purge is client-side. This row says what that costs (issue 15).

Each run starts from freshly refilled `cache:*` keys. Meanwhile a separate process
PINGs the server every millisecond on its own connection and we report the p50 /
p99 / max latency, corrected for coordinated omission: a PING that waited 10 ms
also stands for the nine PINGs a 1 ms schedule would have sent meanwhile.

The server is a lab redis-server (AOF everysec, noeviction, like production) with
maxmemory 2gb and automatic RDB snapshots / AOF rewrites off, so that no fork
lands in a measurement.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from redis_runbook.config import Config, toml
from redis_runbook.keyspace_purge import purge
from redis_runbook.lab.server import RedisServer
from redis_runbook.target import make_client

FILL_BATCH = 10_000
VALUE = "v" * 64
FILL = """
local prefix, first, last, value = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
for i = first, last do
  redis.call('SET', prefix .. i, value)
end
return last - first + 1
"""
#: One bounded step of a server-side purge: one SCAN, UNLINK of what it returned (in
#: chunks: Lua's unpack() is limited to ~8,000 values); the next cursor and how many
#: keys went. No `#!lua flags=` line: a plain EVAL script may write after SCAN.
LUA_PURGE = """
local reply = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])
local keys, gone = reply[2], 0
for i = 1, #keys, 1000 do
  gone = gone + redis.call('UNLINK', unpack(keys, i, math.min(i + 999, #keys)))
end
return {reply[1], gone}
"""
#: SCAN COUNT per script call: the in-process purge's, and a larger bound.
LUA_COUNTS = (1000, 2000)
SEED_PURGE = 'redis-cli -p "$1" --scan --pattern \'cache:*\' | xargs redis-cli -p "$1" DEL'
SETTINGS = {
    "maxmemory": "2gb",
    "save": "",  # no RDB fork in the middle of a measurement
    "auto-aof-rewrite-percentage": "0",  # nor an AOF rewrite fork
}
PINGER = r"""
import json, signal, socket, sys, time
port, interval = int(sys.argv[1]), float(sys.argv[2])
stop = False
def halt(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, halt)
sock = socket.create_connection(("127.0.0.1", port))
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
samples = []
print("ready", flush=True)
due = time.perf_counter()
while not stop:
    wait = due - time.perf_counter()
    if wait > 0:
        time.sleep(wait)
    started = time.perf_counter()
    sock.sendall(b"*1\r\n$4\r\nPING\r\n")
    reply = b""
    while not reply.endswith(b"\r\n"):
        reply += sock.recv(64)
    samples.append(time.perf_counter() - started)
    due = max(due + interval, time.perf_counter())
print(json.dumps(samples))
"""


def fill(client: redis.Redis, prefix: str, count: int) -> None:
    """`count` string keys `<prefix><i>`, written by a Lua loop in batches."""
    sha = str(client.script_load(FILL))
    for first in range(0, count, FILL_BATCH):
        last = min(first + FILL_BATCH, count) - 1
        client.evalsha(sha, 0, prefix, first, last, VALUE)


def aof_settled(client: redis.Redis, timeout: float = 60.0) -> None:
    """Poll until no AOF fsync is pending, so one run's writes do not spill into the next."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info: Any = client.info("persistence")
        if not info.get("aof_pending_bio_fsync") and not info.get("aof_buffer_length"):
            return
        time.sleep(0.05)


def with_pings(port: int, work: Callable[[], object]) -> tuple[float, list[float]]:
    """Run `work` while another process PINGs every millisecond; returns the wall
    time of `work` and the PING latencies in ms."""
    pinger = subprocess.Popen(
        [sys.executable, "-c", PINGER, str(port), "0.001"], stdout=subprocess.PIPE, text=True
    )
    assert pinger.stdout is not None
    assert pinger.stdout.readline().strip() == "ready"
    time.sleep(0.2)  # a baseline before the work starts
    started = time.perf_counter()
    work()
    seconds = time.perf_counter() - started
    pinger.send_signal(signal.SIGTERM)
    output, _ = pinger.communicate(timeout=30)
    return seconds, corrected([s * 1000 for s in json.loads(output)])


def corrected(samples: list[float], interval_ms: float = 1.0) -> list[float]:
    """Latencies corrected for coordinated omission (HdrHistogram's expected-interval
    method): a PING that took L ms also stands for the PINGs a 1 ms schedule would
    have sent while it waited, which would have seen L-1, L-2, ... ms."""
    out = []
    for latency in samples:
        out.append(latency)
        missing = latency - interval_ms
        while missing >= interval_ms:
            out.append(missing)
            missing -= interval_ms
    return out


def percentile(samples: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


@dataclass
class Run:
    """One measured purge."""

    what: str
    seconds: float | None
    pings: list[float]
    busy: dict[str, tuple[int, float]] = field(default_factory=dict)

    def row(self, base: float | None) -> str:
        """One Markdown table row; `base` is the seed's wall time."""
        wall = f"{self.seconds:.2f} s" if self.seconds is not None else "-"
        ratio = f"{base / self.seconds:.1f}x" if base and self.seconds else "-"
        busy = ", ".join(f"{n} x{calls}: {sec:.2f} s" for n, (calls, sec) in self.busy.items())
        return (
            f"| {self.what} | {wall} | {ratio} | {busy or '-'} | "
            f"{percentile(self.pings, 50):.2f} | {percentile(self.pings, 99):.2f} | "
            f"{max(self.pings):.1f} |"
        )


def measure(client: redis.Redis, port: int, what: str, work: Callable[[], object]) -> Run:
    """Run `work` under the pinger; Redis' own time per command from INFO commandstats."""
    aof_settled(client)
    client.config_resetstat()
    seconds, pings = with_pings(port, work)
    stats: Any = client.info("commandstats")
    busy = {
        name.upper(): (
            int(stats[f"cmdstat_{name}"]["calls"]),
            stats[f"cmdstat_{name}"]["usec"] / 1e6,
        )
        for name in ("scan", "unlink", "del", "evalsha")
        if f"cmdstat_{name}" in stats
    }
    return Run(what, seconds, pings, busy)


def bench_oom(cache_keys: int, machine: str) -> None:
    """Fill, purge each way (seed, ours, the Lua floor), print the table."""
    others = cache_keys
    config = Config()
    cache = next(c for c in config.categories if c.name == "cache")
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="rr-bench-oom-") as tmp:
        server = RedisServer(Path(tmp) / "redis", settings=SETTINGS)
        server.start()
        try:
            assert server.port is not None
            port = server.port
            client = redis.Redis(port=port, decode_responses=True)
            started = time.perf_counter()
            fill(client, "bull:bench:", others // 2)
            fill(client, "session:", others - others // 2)
            fill_s = time.perf_counter() - started
            raw = make_client(server.target(), decode=False)  # the tool's own client
            contenders: list[tuple[str, Callable[[], object]]] = [
                ("seed: `redis-cli --scan \\| xargs redis-cli DEL`", lambda: run_seed_purge(port)),
                (
                    "ours: `purge()` in-process (SCAN + UNLINK x500)",
                    lambda: purge(raw, cache, categories=config.categories),
                ),
                (
                    "ours: `redis-runbook --yes keys purge` (process)",
                    lambda: run_cli_purge(Path(tmp), port),
                ),
                *(
                    (
                        f"server-side floor, no check: Lua SCAN COUNT {count} + UNLINK per EVALSHA",
                        lambda count=count: lua_purge(client, "cache:*", count),
                    )
                    for count in LUA_COUNTS
                ),
            ]
            runs.append(measure(client, port, "(idle server, 2 s: the floor)", idle))
            runs[0].seconds = None
            for what, work in contenders:
                fill(client, "cache:", cache_keys)
                info: Any = client.info("memory")
                memory = info["used_memory_human"]
                runs.append(measure(client, port, what, work))
                assert client.dbsize() == others, f"{what} must delete exactly the cache keys"
            raw.close()
            client.close()
        finally:
            server.stop(save=False)

    print(f"## oom: purge cache:* (seed §3.2) — {time.strftime('%Y-%m-%d')}\n")
    print(
        f"{machine}. {cache_keys:,} `cache:*` keys among {others:,} `bull:*`/`session:*` keys "
        f"(64-byte strings, used_memory {memory}, the others filled in {fill_s:.1f} s by a "
        "Lua loop, the cache refilled before each run); lab redis-server with AOF everysec, "
        "noeviction, maxmemory 2gb, no RDB/rewrite forks. Redis busy: time Redis itself spent "
        "in each command (INFO commandstats). Latency: a separate process PINGs every 1 ms on "
        "its own connection; corrected for coordinated omission (a PING that waited L ms also "
        "counts the PINGs a 1 ms schedule would have sent meanwhile, at L-1, L-2, ... ms). "
        "The Lua rows are the floor of a server-side purge, not a product option: each "
        "EVALSHA runs one SCAN and UNLINKs every key it returned, with no check; the product "
        "checks each key against the other categories' patterns, the BullMQ prefixes and its "
        "own keys before deleting it, which is why its purge is client-side. Their EVALSHA "
        "time includes the SCAN and UNLINK time listed beside it.\n"
    )
    print("| purge | wall time | vs seed | Redis busy | PING p50 ms | PING p99 ms | PING max ms |")
    print("|---|---|---|---|---|---|---|")
    seed_s = runs[1].seconds
    for run in runs:
        print(run.row(seed_s if run.seconds else None))


def idle() -> None:
    """Nothing, for 2 s: the latency floor of the machine."""
    time.sleep(2.0)


def run_seed_purge(port: int) -> None:
    """The seed's pipeline, in bash."""
    subprocess.run(
        ["bash", "-c", SEED_PURGE, "seed", str(port)], stdout=subprocess.DEVNULL, check=True
    )


def lua_purge(client: redis.Redis, pattern: str, count: int) -> int:
    """Delete every key matching `pattern` by calling LUA_PURGE with the cursor until
    it comes back to 0; each call visits `count` slots. Returns the keys deleted."""
    sha = str(client.script_load(LUA_PURGE))  # so that no EVALSHA fails with NOSCRIPT
    cursor: Any = "0"
    gone = 0
    while True:
        reply: Any = client.evalsha(sha, 0, cursor, pattern, count)
        cursor, deleted = reply
        gone += int(deleted)
        if cursor in ("0", b"0"):
            return gone


def write_config(tmp: Path, port: int) -> Path:
    """A config file for the CLI: the server on `port`, the default categories, state
    under `tmp`."""
    config = tmp / "runbook.toml"
    config.write_text(
        toml.dumps(
            {
                "target": {"url": f"redis://127.0.0.1:{port}/0"},
                "runbook": {"state_dir": str(tmp / "s")},
            }
        )
    )
    return config


def cli_env() -> dict[str, str]:
    """This environment without any REDIS_RUNBOOK_* setting."""
    return {k: v for k, v in os.environ.items() if not k.startswith("REDIS_RUNBOOK_")}


def run_cli_purge(tmp: Path, port: int) -> None:
    """The whole command, as an operator runs it."""
    config = write_config(tmp, port)
    env = cli_env()
    command = ["--config", str(config), "--yes", "keys", "purge", "--category", "cache"]
    subprocess.run(
        [sys.executable, "-m", "redis_runbook", *command],
        env=env,
        stdout=subprocess.DEVNULL,
        check=True,
    )
