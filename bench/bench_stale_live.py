"""Stale recovery under live traffic (issue 12 item 3): 100,000 stale jobs across 50
queues while Node BullMQ v5 workers (tests/interop/traffic.js) keep fetching and
finishing jobs on the same queues, so fetches push in front of the stale ids and
finished ids leave `active` from anywhere.

`queues recover-stale` runs as the CLI runs it (plan, then every step), in-process.
How long Redis is blocked is measured three ways, all on the server's clock or a
second client's, never the tool's own: SLOWLOG (every command slower than 1 ms, so
ours — EVAL — and the workers' — EVALSHA — apart), LATENCY LATEST (the `command`
event) and a PING probe on its own connection (round trip, so it includes the
machine's own scheduling on a busy host). Goal: < 25 ms per call of ours.

Run the same bench on an older checkout by putting its src first on PYTHONPATH
(`PYTHONPATH=/tmp/old/src .venv/bin/python bench/run.py --only stale-live`): it only
uses plan_recover_stale, Options and ProcedureContext."""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis
from bullmq import Queue

from redis_runbook import lab
from redis_runbook.bullmq.keys import QueueRef
from redis_runbook.config import load_config
from redis_runbook.lab.lifecycle import lab_server
from redis_runbook.procedures.context import ProcedureContext
from redis_runbook.procedures.stale import Options, plan_recover_stale

INTEROP = Path(__file__).resolve().parent.parent / "tests" / "interop"
SLOW_US = 1000
GOAL_MS = 25.0
# Workers that fetched every job and died: ids moved wait -> active, no lock left.
ACTIVATE = """
local n = 0
while n < tonumber(ARGV[1]) do
  if not redis.call('RPOPLPUSH', KEYS[1], KEYS[2]) then break end
  n = n + 1
end
return n
"""

# Read-only and atomic: how many ids in `active` have a job hash and no lock.
STALE_LEFT = """
local n = 0
for _, id in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if redis.call('EXISTS', ARGV[1] .. id .. ':lock') == 0
     and redis.call('EXISTS', ARGV[1] .. id) == 1 then n = n + 1 end
end
return n
"""


async def _add(port: int, queues: list[str], per_queue: int) -> None:
    for name in queues:
        queue = Queue(name, {"connection": {"host": "127.0.0.1", "port": port}})
        for start in range(0, per_queue, 1000):
            await queue.addBulk(
                [
                    {"name": "work", "data": {"n": i}, "opts": {"jobId": f"dead-{i}"}}
                    for i in range(start, min(per_queue, start + 1000))
                ]
            )
        await queue.close()


class PingProbe(threading.Thread):
    """PING in a loop on its own connection; keeps every round trip (ms)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis(port=port)
        self.samples: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            began = time.perf_counter()
            self.client.ping()
            self.samples.append((time.perf_counter() - began) * 1000)
            time.sleep(0.001)


def _traffic(port: int, queues: list[str], concurrency: int) -> subprocess.Popen[str]:
    # Producers keep a backlog of about 40 x concurrency; jobs take 20-300 ms.
    args = {"queues": queues, "concurrency": concurrency, "minMs": 20, "maxMs": 300,
            "batch": max(20, concurrency // 2), "tickMs": 100,
            "maxBacklog": 40 * concurrency}  # fmt: skip
    proc = subprocess.Popen(
        ["node", str(INTEROP / "traffic.js"), json.dumps(args)],
        cwd=INTEROP,
        env={"REDIS_URL": f"redis://127.0.0.1:{port}/0", "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        if '"ready"' in line:
            break
        if time.monotonic() > deadline:
            break
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the pipe drained
    return proc


def _slowlog(client: redis.Redis) -> tuple[list[float], list[float], list[float]]:
    """Server-side ms of the slow-logged commands: (our recovery script calls, our
    read-only reads, everything else — the workers' EVALSHA)."""
    moves: list[float] = []
    reads: list[float] = []
    theirs: list[float] = []
    for entry in client.slowlog_get(100_000):  # type: ignore[union-attr]
        command = bytes(entry.get("command", b""))
        ms = int(entry["duration"]) / 1000
        if not command.upper().startswith(b"EVAL "):
            theirs.append(ms)
        elif b"flags=no-writes" in command[:40]:
            reads.append(ms)
        else:
            moves.append(ms)
    return moves, reads, theirs


def _spread(samples: list[float]) -> str:
    """median / p99 / max, in ms."""
    if not samples:
        return "-"
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"{statistics.median(ordered):.1f} / {p99:.1f} / {ordered[-1]:.1f} ms"


def bench_stale_live(queues_n: int, per_queue: int, concurrency: int, machine: str) -> None:
    """Print the table (Markdown): `queues_n` queues of `per_queue` stale jobs each,
    live workers at `concurrency` per queue."""
    names = [f"live-{i:02d}" for i in range(queues_n)]
    with tempfile.TemporaryDirectory(prefix="rr-bench-") as tmp:
        directory = Path(tmp) / "lab"
        status = lab.up(directory, maxmemory="2gb")
        assert status.port is not None
        client = redis.Redis(port=status.port)
        traffic = None
        try:
            asyncio.run(_add(status.port, names, per_queue))
            for name in names:
                client.eval(ACTIVATE, 2, f"bull:{name}:wait", f"bull:{name}:active", per_queue)
            traffic = _traffic(status.port, names, concurrency)
            time.sleep(3)  # let the workers fill their slots in front of the stale ids
            client.config_set("slowlog-log-slower-than", SLOW_US)
            client.config_set("slowlog-max-len", 100_000)
            client.config_set("latency-monitor-threshold", 1)
            client.slowlog_reset()
            client.execute_command("LATENCY", "RESET")
            probe = PingProbe(status.port)
            probe.start()

            config = load_config(status.config_path, env={}).config
            config.runbook.state_dir = Path(tmp) / "state"
            ctx = ProcedureContext(config)
            refs = [QueueRef("bull", n) for n in names]
            started = time.perf_counter()
            plan = plan_recover_stale(ctx, refs, Options())
            planned = time.perf_counter() - started
            messages = [step.action() for step in plan.steps]
            wall = time.perf_counter() - started
            probe.stop.set()
            probe.join()
            moves, reads, theirs = _slowlog(client)
            latest = client.execute_command("LATENCY", "LATEST")
            left = 0
            for n in names:
                reply: Any = client.eval(STALE_LEFT, 1, f"bull:{n}:active", f"bull:{n}:")
                left += int(reply)
        finally:
            if traffic is not None:
                traffic.terminate()
                traffic.wait(30)
            client.close()
            lab_server(directory).stop(save=False)

    command_max = max((int(e[2]) for e in latest if e[0] in (b"command", "command")), default=0)
    print(
        f"## stale recovery under live traffic, {queues_n} queue(s) x {per_queue:,}, "
        f"{concurrency} live per queue — {time.strftime('%Y-%m-%d')}\n"
    )
    print(
        f"{machine}; {queues_n} queues x {per_queue:,} stale jobs = {queues_n * per_queue:,}, "
        f"Node BullMQ workers on every queue (concurrency {concurrency}, jobs 20-300 ms, producers "
        f"refilling), one run. Server-side times are wall clock: on a loaded host they "
        f"include the time Redis waited for a core.\n"
    )
    print("| figure | value |")
    print("|---|---|")
    print(f"| plan (read-only survey of every queue) | {planned:.2f} s |")
    print(f"| whole run (plan + steps + re-count) | {wall:.2f} s |")
    print(f"| stale jobs left in active without a lock | {left} |")
    print(f"| our moving calls >= {SLOW_US / 1000:g} ms: count, median / p99 / max "
          f"(SLOWLOG) | {len(moves)}: {_spread(moves)} |")  # fmt: skip
    print(f"| our read-only calls >= {SLOW_US / 1000:g} ms: count, median / p99 / max | "
          f"{len(reads)}: {_spread(reads)} |")  # fmt: skip
    over = sum(1 for m in moves + reads if m > GOAL_MS)
    print(f"| our calls over the {GOAL_MS:g} ms goal | {over} |")
    print(f"| workers' commands >= {SLOW_US / 1000:g} ms (EVALSHA): count, median / p99 / max | "
          f"{len(theirs)}: {_spread(theirs)} |")  # fmt: skip
    print(f"| LATENCY LATEST `command` max | {command_max} ms |")
    print(f"| PING round trip from another client: median / p99 / max | {_spread(probe.samples)} |")
    for message in messages[-1:]:
        print(f"\nLast step: {message}")


def main() -> None:  # pragma: no cover - a bench entry point
    """`python bench/bench_stale_live.py [QUEUES [PER_QUEUE [CONCURRENCY]]]` (also on an
    older checkout's src, see the module docstring)."""
    import platform
    import sys

    queues_n = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    per_queue = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    concurrency = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    machine = f"Machine: {platform.machine()}, Python {platform.python_version()}"
    bench_stale_live(queues_n, per_queue, concurrency, machine)


if __name__ == "__main__":
    main()
