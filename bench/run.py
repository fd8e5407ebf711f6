"""Benchmarks against the seed runbook's own procedures, side by side in one run.

    ./run bench [--only health|diagnose|assess|restore|stale|stale-live|failed|oom|
                        reconstruct|failover|exporter|production|startup|restart|
                        seed-compose|estimate[,...]]
                [--runs N]
                [--production-bytes N] [--production-backends process,compose]
                [--oom-keys N] [--stale-jobs N] [--failed-jobs N] [--reconstruct-rows N]
                [--seed-compose-keys N] [--estimate-keys N]

`--only` takes one section or a comma-separated list (`--only restart,oom,restore`), run
in the order given; without it every section runs, in the order above.

health (seed §2.1): the seed's health-check script (its redis-cli calls, with
`docker compose exec` removed) vs `redis-runbook health --json` as a whole process,
and the snapshot+evaluation alone in-process. Round trips are counted on the wire
(every packed write the client sends).

oom (seed §3.2): purging `cache:*` from a keyspace that also holds as many
`bull:*`/`session:*` keys — our SCAN + pipelined UNLINK vs the seed's
`redis-cli --scan --pattern 'cache:*' | xargs redis-cli DEL`, and the floor of a
server-side purge (a Lua SCAN + UNLINK per EVALSHA, bounded per call, no protection
check) — wall time, and the PING latency another client sees meanwhile (see bench_oom.py).

reconstruct (seed §5.3): PostgreSQL rows to BullMQ jobs — `queues reconstruct` vs
the seed's `LIMIT 1000` + sequential `queue.add` — jobs/s and peak RSS (see
bench_reconstruct.py). `--reconstruct-rows N`, `--reconstruct-seed-rows N`.

exporter (seed §6.3): `/metrics` scrape time with 1,000 queues and 1M keys vs Debian's
prometheus-redis-exporter on the same server, and the monitor's RSS over many cycles
(see bench_exporter.py). `--exporter-queues N`, `--exporter-keys N`, `--monitor-cycles N`.

stale-live (issue 12 item 3): `queues recover-stale` on 50 queues x 2,000 stale jobs with
Node BullMQ workers live on every queue, and on one queue of 3,000 with 2,000 live
workers: the longest Redis block per script call (SLOWLOG, LATENCY, a PING probe) and
the stale jobs left (see bench_stale_live.py). Needs Node (tests/interop).

failed (issue 16): `queues retry-failed` on 100,000 failed jobs vs BullMQ's
`Queue.retryJobs()` and `job.retry()` per job: wall time and the longest script call in
Redis' SLOWLOG (see bench_failed.py). `--failed-jobs N`, `--failed-per-job N`.

failover: a planned Sentinel switchover, `redis-runbook failover` vs SENTINEL FAILOVER
sent by hand and polled, time until a new master takes a write (see bench_failover.py).

production (issue 13): a 4 GiB dataset through recover restart, backup create, backup
verify, recover restore and recover aof, on the process backend and on compose with a
private Docker engine (see bench_production.py). `--production-bytes N`,
`--production-backends process,compose`. Needs root for the engine; ~9 GB of RAM and
~30 GB of disk under /var/tmp.

startup (issue 15): whole processes of `--version`, `--help`, `health --help` and
`health --json` against a throwaway redis-server, beside the interpreter's start and
`import redis` alone, interleaved, min and median (see bench_startup.py). `--runs N`.

restart (issue 15): `recover restart` on millions of keys against the floor of any
restart (SHUTDOWN SAVE, start, until loaded, by hand), and with --verify-categories
(see bench_restart.py). `--restart-keys N`.

seed-compose (issue 15): the seed's commands as written — `docker compose exec redis
redis-cli …` — against the compose deployment on a private Docker engine, beside
`health --json` and `keys purge --category cache` on the same container: the §2.1 script,
the §2.2 one-liner, the §3.2 `--scan | xargs … DEL` (see bench_seed_compose.py).
`--seed-compose-keys N`, `--runs N`. Needs root for the engine.

estimate (issue 15 goal 3): `keys stats --estimate --json` vs the exact walk `keys stats
--json`, whole processes, on 10M keys over cache:*, bull:*, session:* (50/30/20 %): wall
times and keys per category, the estimate's 95 % error bars against the exact counts
(see bench_estimate.py). `--estimate-keys N`; 10M keys take ~1.5 GB of RAM.

Every process the benchmarks start runs with bytecode (a cache in a temporary
directory), as an installed package does, even where PYTHONDONTWRITEBYTECODE=1 is set.
Prints Markdown tables for docs/benchmarks.md. Benchmarks are not tests: nothing
here asserts a timing.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from bench_assess import bench_assess
from bench_diagnose import bench_diagnose
from bench_estimate import bench_estimate
from bench_exporter import bench_exporter
from bench_failed import bench_failed
from bench_failover import bench_failover
from bench_oom import bench_oom
from bench_production import bench_production
from bench_reconstruct import bench_reconstruct
from bench_restart import bench_restart
from bench_restore import bench_restore
from bench_seed_compose import bench_seed_compose
from bench_stale import bench_stale
from bench_stale_live import bench_stale_live
from bench_startup import bench_startup
from redis_runbook import __version__, lab
from redis_runbook.checks import run_health
from redis_runbook.config import load_config
from redis_runbook.lab.seed import SeedPlan, seed
from redis_runbook.target import RunbookConnection

#: The sections, in the order a whole run takes them.
SECTIONS = (
    "health",
    "diagnose",
    "assess",
    "restore",
    "stale",
    "stale-live",
    "failed",
    "oom",
    "reconstruct",
    "failover",
    "exporter",
    "production",
    "startup",
    "restart",
    "seed-compose",
    "estimate",
)
SEED_HEALTH_SCRIPT = """
set -u
P="$1"
echo "Ping Test:"; redis-cli -p "$P" ping
echo "Memory Status:"
redis-cli -p "$P" info memory | grep -E "used_memory_human|maxmemory_human|mem_fragmentation"
echo "Persistence Status:"
redis-cli -p "$P" info persistence | grep -E "aof_enabled|aof_last|rdb_last"
echo "Connected Clients:"; redis-cli -p "$P" info clients | grep connected_clients
echo "Key Statistics:"; redis-cli -p "$P" info keyspace
"""


def median_ms(fn: Callable[[], Any], runs: int) -> float:
    """Median wall time of `fn` in milliseconds (one warm-up run first)."""
    fn()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def count_round_trips(fn: Callable[[], Any]) -> int:
    """How many writes the tool's connections put on the wire while `fn` runs
    (a pipelined batch is one write, hence one round trip)."""
    original = RunbookConnection.send_packed_command
    writes = 0

    def counting(self: Any, command: Any, check_health: bool = True) -> None:
        nonlocal writes
        writes += 1
        original(self, command, check_health)  # type: ignore[no-untyped-call]

    RunbookConnection.send_packed_command = counting  # type: ignore[method-assign]
    try:
        fn()
    finally:
        RunbookConnection.send_packed_command = original  # type: ignore[method-assign]
    return writes


def run(command: list[str], env: dict[str, str]) -> None:
    """Run a command, discarding output (exit codes 0-3 are health results)."""
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=False)


def redis_version() -> str:
    """`7.0.15` from `redis-server --version`."""
    return (
        subprocess.run(["redis-server", "--version"], capture_output=True, text=True, check=False)
        .stdout.split()[2]
        .removeprefix("v=")
    )


def machine() -> str:
    """The machine and versions line of every section."""
    return (
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}; Redis {redis_version()}; "
        f"redis-py {redis.__version__}; redis-runbook {__version__}"
    )


def with_bytecode(cache: Path) -> None:
    """Every process the benchmarks start from now on runs with bytecode, as an installed
    package does (pip compiles it; a source tree writes `__pycache__` on its first run):
    an environment with PYTHONDONTWRITEBYTECODE=1 would have each whole-process contender
    compile every redis_runbook module on every run. The cache is `cache` (a temporary
    directory, PYTHONPYCACHEPREFIX), never the source tree."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(cache)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="rr-bench-pycache-") as cache:
        with_bytecode(Path(cache))
        run_sections()


def run_sections() -> None:
    """Parse the command line and run the chosen sections."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--only",
        type=sections,
        metavar="SECTION[,SECTION...]",
        help=f"Only these, comma-separated, in the order given: {', '.join(SECTIONS)}.",
    )
    parser.add_argument(
        "--runs", type=int, default=30, help="health, startup: runs per measurement."
    )
    parser.add_argument(
        "--oom-keys", type=int, default=1_000_000, help="oom: cache keys (and as many others)."
    )
    parser.add_argument("--assess-queues", type=int, default=1000, help="assess: queues.")
    parser.add_argument("--exporter-queues", type=int, default=1000, help="exporter: queues.")
    parser.add_argument("--exporter-keys", type=int, default=1_000_000, help="exporter: keys.")
    parser.add_argument("--monitor-cycles", type=int, default=720, help="exporter: monitor.")
    parser.add_argument("--failover-rounds", type=int, default=3, help="failover: rounds.")
    parser.add_argument("--restore-bytes", type=int, default=2**30, help="restore: data size.")
    parser.add_argument(
        "--production-bytes", type=int, default=4 * 2**30, help="production: used_memory."
    )
    parser.add_argument(
        "--production-backends",
        default="process,compose",
        help="production: process, compose or both (comma-separated).",
    )
    parser.add_argument("--stale-jobs", type=int, default=100_000, help="stale: active jobs.")
    parser.add_argument("--failed-jobs", type=int, default=100_000, help="failed: failed jobs.")
    parser.add_argument(
        "--failed-per-job", type=int, default=10_000, help="failed: jobs job.retry() retries."
    )
    parser.add_argument(
        "--reconstruct-rows", type=int, default=1_000_000, help="reconstruct: pending rows."
    )
    parser.add_argument(
        "--reconstruct-seed-rows",
        type=int,
        default=100_000,
        help="reconstruct: rows the seed's sequential add runs over (it is slow).",
    )
    parser.add_argument(
        "--restart-keys", type=int, default=3_000_000, help="restart: keys in the keyspace."
    )
    parser.add_argument(
        "--seed-compose-keys",
        type=int,
        default=1_000_000,
        help="seed-compose: cache keys the purge deletes (and as many others).",
    )
    parser.add_argument(
        "--estimate-keys", type=int, default=10_000_000, help="estimate: keys in the keyspace."
    )
    args = parser.parse_args()
    runners: dict[str, Callable[[], None]] = {
        "health": lambda: bench_health(args.runs),
        "diagnose": lambda: bench_diagnose(min(args.runs, 10), machine(), median_ms),
        "assess": lambda: bench_assess(args.assess_queues, machine()),
        "restore": lambda: bench_restore(args.restore_bytes, machine()),
        "stale": lambda: bench_stale(args.stale_jobs, machine()),
        "stale-live": lambda: bench_stale_lives(machine()),
        "failed": lambda: bench_failed(args.failed_jobs, args.failed_per_job, machine()),
        "oom": lambda: bench_oom(args.oom_keys, machine()),
        "reconstruct": lambda: bench_reconstruct(
            args.reconstruct_rows, args.reconstruct_seed_rows, machine()
        ),
        "failover": lambda: bench_failover(args.failover_rounds, machine()),
        "exporter": lambda: bench_exporter(
            args.exporter_queues, args.exporter_keys, args.runs, args.monitor_cycles, machine()
        ),
        "production": lambda: bench_production(
            args.production_bytes, args.production_backends.split(","), machine()
        ),
        "startup": lambda: bench_startup(args.runs, machine()),
        "restart": lambda: bench_restart(args.restart_keys, machine()),
        "seed-compose": lambda: bench_seed_compose(
            args.seed_compose_keys, min(args.runs, 10), machine(), median_ms
        ),
        "estimate": lambda: bench_estimate(args.estimate_keys, machine()),
    }
    assert list(runners) == list(SECTIONS)
    for index, name in enumerate(args.only or SECTIONS):
        if index:
            print()
        runners[name]()


def bench_stale_lives(machine: str) -> None:
    """stale-live: many queues with a few workers each, then one queue with many."""
    bench_stale_live(50, 2000, 5, machine)
    print()
    bench_stale_live(1, 3000, 2000, machine)


def sections(value: str) -> list[str]:
    """`--only`: one section name or a comma-separated list of them, each once."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in SECTIONS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown section {', '.join(unknown) or repr(value)} "
            f"(choose from {', '.join(SECTIONS)})"
        )
    return list(dict.fromkeys(names))


def bench_health(runs: int) -> None:
    """The health benchmark (seed §2.1)."""
    with tempfile.TemporaryDirectory(prefix="rr-bench-") as tmp:
        status = lab.up(Path(tmp) / "lab")
        try:
            config = load_config(status.config_path, env={}).config
            seed(config.target, SeedPlan(scale=10))
            assert status.port is not None
            env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_RUNBOOK_")}
            env["REDIS_RUNBOOK_CONFIG"] = str(status.config_path)
            keys = redis.Redis(port=status.port).dbsize()

            in_process = median_ms(lambda: run_health(config), runs * 10)
            round_trips = count_round_trips(lambda: run_health(config))
            seed_script = median_ms(
                lambda: run(["bash", "-c", SEED_HEALTH_SCRIPT, "seed", str(status.port)], env),
                runs,
            )
            whole = median_ms(
                lambda: run([sys.executable, "-m", "redis_runbook", "health", "--json"], env),
                runs,
            )
            python_start = median_ms(lambda: run([sys.executable, "-c", "pass"], env), runs)
        finally:
            lab.down(Path(tmp) / "lab")

    print(f"## health (seed §2.1) — {time.strftime('%Y-%m-%d')}\n")
    print(
        f"{machine()}; lab seeded with {keys} keys; {runs} runs "
        f"(in-process: {runs * 10}), medians.\n"
    )
    print("| what | median | vs seed script |")
    print("|---|---|---|")
    print(f"| seed §2.1 script: 5 redis-cli calls + greps | {seed_script:.1f} ms | 1.00 |")
    print(
        f"| `redis-runbook health --json`, whole process | {whole:.1f} ms | "
        f"{whole / seed_script:.2f} |"
    )
    print(
        f"| snapshot + 18 checks, in-process | {in_process:.2f} ms | "
        f"{in_process / seed_script:.3f} |"
    )
    print(f"| bare `python -c pass` (interpreter start) | {python_start:.1f} ms | - |")
    print(
        f"\nRound trips per health run: {round_trips} "
        "(1 pipelined connection handshake + 1 timed PING + 1 pipeline)."
    )


if __name__ == "__main__":
    main()
