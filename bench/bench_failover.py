"""Planned switchover on a local topology (1 master, 2 replicas, 3 Sentinels): time
from the start of the command until a new master accepts writes, as seen by an
observer that polls Sentinel and writes to whatever master it names every 10 ms.

Baseline: what an operator scripts by hand — `SENTINEL FAILOVER` to one Sentinel,
then poll `GET-MASTER-ADDR-BY-NAME` and try a write. Ours: `redis-runbook --yes
failover` as a whole process (pre-checks, the switch, verification), and the same
plan run in-process. The methods alternate, so each starts from a settled topology."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import redis

from redis_runbook.config import Config, toml
from redis_runbook.lab.topology import SERVICE, Topology, start_topology
from redis_runbook.procedures.context import ProcedureContext
from redis_runbook.procedures.failover import plan_sentinel_failover

POLL_S = 0.01


def _master(top: Topology) -> tuple[str, int]:
    for sentinel in top.sentinels:
        client = redis.Redis(port=sentinel.port, decode_responses=True, socket_timeout=1)
        try:
            host, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
            return str(host), int(port)
        except redis.RedisError:
            continue
        finally:
            client.close()
    raise RuntimeError("no Sentinel answers")


def _writes_on_new_master(top: Topology, old: tuple[str, int], deadline_s: float) -> float:
    """Seconds (monotonic) at which a master other than `old` took a write."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        address = _master(top)
        if address != old:
            client = redis.Redis(host=address[0], port=address[1], socket_timeout=1)
            try:
                client.set("bench:failover", "1")
                return time.monotonic()
            except redis.RedisError:
                pass
            finally:
                client.close()
        time.sleep(POLL_S)
    raise RuntimeError("no new master took a write in time")


def _timed(top: Topology, method: Callable[[], None]) -> float:
    top.wait_settled(60)
    old = _master(top)
    result: dict[str, float] = {}
    started = time.monotonic()
    observer = threading.Thread(
        target=lambda: result.update(at=_writes_on_new_master(top, old, 60)), daemon=True
    )
    observer.start()
    method()
    observer.join(65)
    return result["at"] - started


def bench_failover(rounds: int, machine: str) -> None:
    """Print the failover table (Markdown)."""
    with tempfile.TemporaryDirectory(prefix="rr-bench-") as tmp:
        top = start_topology(Path(tmp) / "topology")
        try:
            sentinel = top.sentinel_config()
            config_path = Path(tmp) / "rr.toml"
            config_path.write_text(
                toml.dumps(
                    {
                        "target": {
                            "url": top.target().url,
                            "sentinel": {
                                "service": sentinel.service,
                                "addresses": sentinel.addresses,
                            },
                        },
                        "runbook": {"state_dir": str(Path(tmp) / "state")},
                    }
                )
            )
            env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_RUNBOOK_")}
            config = Config.model_validate(
                {
                    "target": top.target().model_dump(),
                    "runbook": {"state_dir": str(Path(tmp) / "state")},
                }
            )

            def by_hand() -> None:
                client = redis.Redis(port=top.sentinels[0].port)
                try:
                    client.execute_command("SENTINEL", "FAILOVER", SERVICE)
                finally:
                    client.close()

            def whole_process() -> None:
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "redis_runbook",
                        "--config",
                        str(config_path),
                        "--yes",
                        "failover",
                    ],
                    env=env,
                    check=True,
                    capture_output=True,
                )

            def in_process() -> None:
                ctx = ProcedureContext(config)
                plan = plan_sentinel_failover(ctx, {})
                ctx.runner().execute(plan)

            times: dict[str, list[float]] = {"hand": [], "ours": [], "inproc": []}
            for _ in range(rounds):
                times["hand"].append(_timed(top, by_hand))
                times["ours"].append(_timed(top, whole_process))
                times["inproc"].append(_timed(top, in_process))
        finally:
            top.stop()

    hand = statistics.median(times["hand"])
    print(f"## planned switchover (Sentinel) — {time.strftime('%Y-%m-%d')}\n")
    print(
        f"{machine}; 1 master, 2 replicas, 3 Sentinels on loopback; {rounds} rounds of "
        "each method, alternating; time until a new master takes a write.\n"
    )
    print("| method | median | min | max | overhead vs by hand |")
    print("|---|---|---|---|---|")
    labels = {
        "hand": "by hand: SENTINEL FAILOVER + poll GET-MASTER-ADDR-BY-NAME",
        "ours": "`redis-runbook --yes failover`, whole process",
        "inproc": "the same plan, in-process",
    }
    for name, label in labels.items():
        xs = times[name]
        median = statistics.median(xs)
        print(
            f"| {label} | {median:.2f} s | {min(xs):.2f} s | {max(xs):.2f} s | "
            f"{median - hand:+.2f} s |"
        )
