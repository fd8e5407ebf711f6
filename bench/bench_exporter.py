"""Exporter scrape time with many BullMQ queues and a large keyspace, side by side
with Debian's `prometheus-redis-exporter` (oliver006/redis_exporter) scraping the
same server; and the monitor's RSS over many cycles (does it stay flat?).

Both exporters are real processes on loopback, scraped over HTTP by the same client
loop; the first scrape of ours includes queue discovery (a SCAN of the keyspace),
later ones reuse the cached queue list as configured."""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import redis

from bench_assess import _fill
from redis_runbook import lab
from redis_runbook.lab.lifecycle import lab_server
from redis_runbook.ports import free_port

MONITOR_LOOP = """
import os, sys, time
from redis_runbook.config import load_config
from redis_runbook.monitoring.monitor import Monitor

def rss_kib():
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

config = load_config().config
cycles, every = int(sys.argv[1]), int(sys.argv[2])
started = time.perf_counter()
with Monitor(config, sinks=[]) as monitor:
    for n in range(1, cycles + 1):
        monitor.cycle()
        if n == 1 or n % every == 0:
            print(n, rss_kib(), round(time.perf_counter() - started, 1), flush=True)
"""


def _fill_keys(client: redis.Redis, keys: int) -> None:
    batch = 1000
    for start in range(0, keys, batch):
        client.mset({f"cache:{i}": "x" * 16 for i in range(start, min(keys, start + batch))})


def _wait_http(url: str, deadline_s: float = 30.0) -> None:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310
                answer.read()
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _scrape_ms(url: str, runs: int) -> tuple[float, list[float], int]:
    samples = []
    size = 0
    for _ in range(runs):
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=60) as answer:  # noqa: S310
            size = len(answer.read())
        samples.append((time.perf_counter() - started) * 1000)
    return samples[0], samples[1:], size


def bench_exporter(queues: int, keys: int, runs: int, cycles: int, machine: str) -> None:
    """Print the exporter and monitor tables (Markdown)."""
    with tempfile.TemporaryDirectory(prefix="rr-bench-") as tmp:
        directory = Path(tmp) / "lab"
        status = lab.up(directory, maxmemory="2gb")
        assert status.port is not None
        client = redis.Redis(port=status.port)
        env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_RUNBOOK_")}
        env["REDIS_RUNBOOK_CONFIG"] = str(status.config_path)
        env["REDIS_RUNBOOK_RUNBOOK__STATE_DIR"] = str(Path(tmp) / "state")
        processes: list[subprocess.Popen[bytes]] = []
        try:
            asyncio.run(_fill(status.port, queues, 5))
            _fill_keys(client, keys)
            dbsize = client.dbsize()
            results = {}
            ports = {name: free_port() for name in ("theirs", "core", "ours", "every")}
            go = ["prometheus-redis-exporter", "-redis.addr"]
            go += [f"redis://127.0.0.1:{status.port}"]
            go += ["-web.listen-address", f"127.0.0.1:{ports['theirs']}"]
            processes.append(subprocess.Popen(go, stdout=subprocess.DEVNULL))
            variants = {
                "core": {"REDIS_RUNBOOK_EXPORTER__QUEUE_METRICS": "false"},
                "ours": {},
                "every": {"REDIS_RUNBOOK_EXPORTER__QUEUE_REFRESH_SECONDS": "0"},
            }
            for name, extra in variants.items():
                ours = [sys.executable, "-m", "redis_runbook", "exporter"]
                ours += ["--listen", f"127.0.0.1:{ports[name]}"]
                processes.append(
                    subprocess.Popen(ours, env={**env, **extra}, stdout=subprocess.DEVNULL)
                )
            for name, port in ports.items():  # all listening before any is measured
                _wait_http(f"http://127.0.0.1:{port}" + ("/" if name == "theirs" else "/health"))
            for name, port in ports.items():
                results[name] = _scrape_ms(f"http://127.0.0.1:{port}/metrics", runs + 1)
            monitor = subprocess.run(
                [sys.executable, "-c", MONITOR_LOOP, str(cycles), str(max(1, cycles // 6))],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=10)
            client.close()
            lab_server(directory).stop(save=False)

    theirs = statistics.median(results["theirs"][1])
    print(
        f"## exporter scrape, {queues:,} queues and {dbsize:,} keys — {time.strftime('%Y-%m-%d')}\n"
    )
    print(
        f"{machine}; Debian prometheus-redis-exporter 1.45 (oliver006/redis_exporter, Go) vs "
        f"`redis-runbook exporter`, each scraped {runs} times over HTTP on loopback.\n"
    )
    print("| exporter (what it exports) | first scrape | median | p90 | body | vs redis_exporter |")
    print("|---|---|---|---|---|---|")
    labels = {
        "theirs": "redis_exporter 1.45: core metrics (no queues)",
        "core": "ours, `queue_metrics = false`: core + checks",
        "ours": f"ours: core + checks + {queues:,} queues (counts refreshed every 15 s)",
        "every": "ours, `queue_refresh_seconds = 0`: the queues counted in every scrape",
    }
    for name in ("theirs", "core", "ours", "every"):
        first, rest, size = results[name]
        median = statistics.median(rest)
        p90 = statistics.quantiles(rest, n=10)[-1]
        print(
            f"| {labels[name]} | {first:.1f} ms | {median:.1f} ms | {p90:.1f} ms | "
            f"{size / 1024:.0f} KiB | {median / theirs:.1f}x |"
        )
    print()
    rows = [line.split() for line in monitor.stdout.splitlines()]
    print(f"## monitor RSS over {cycles:,} cycles ({queues:,} queues, {dbsize:,} keys)\n")
    print(
        "Cycles back to back in one process (`Monitor.cycle()`, health + queue checks, "
        f"{queues:,} no-workers alerts firing, state file written every cycle).\n"
    )
    print("| cycle | RSS | elapsed |")
    print("|---|---|---|")
    for cycle, rss, elapsed in rows:
        print(f"| {int(cycle):,} | {int(rss) / 1024:.1f} MiB | {float(elapsed):.0f} s |")
