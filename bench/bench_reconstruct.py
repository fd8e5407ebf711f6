"""reconstruct benchmark (seed §5.3): PostgreSQL rows -> BullMQ jobs.

- ours: `redis-runbook --yes --json queues reconstruct` as a whole process (plan-time
  scan of every row + enqueue: server-side cursor, EXISTS pre-check, `addBulk` in
  chunks of 1000), on an empty Redis and again when every job is present; at
  `rows` and at a tenth of them, to show that memory does not grow with rows;
- the seed: `pool.query("SELECT ... LIMIT 1000")` then `await queue.add(...)` per
  row, auto ids. As written it enqueues 1,000 jobs and drops the rest. For its speed
  it runs without the LIMIT: the query loads every row (as node-pg's `pool.query`
  does), then adds sequentially; the adds are stopped after `seed_rows` rows when
  that is fewer, to bound the run time.

The seed runs through the Python bullmq 2.x, whose add scripts are byte-identical to
Node BullMQ 5.81.3 (bullmq.md §0): the same Redis work per job, one round trip each.
Every measurement runs in a fresh process; its peak RSS is VmHWM (/proc/self/status),
reported by the process itself (the seed) or read via getrusage of a wrapper (ours).
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import redis

from redis_runbook.config import toml
from redis_runbook.lab.pg_example import ExampleRows, create_example, example_sources
from redis_runbook.lab.postgres import FAST_SETTINGS, PostgresServer, find_bindir
from redis_runbook.lab.server import RedisServer

PASSWORD = secrets.token_urlsafe(16)
REDIS_SETTINGS = {
    "maxmemory": "6gb",
    "save": "",  # no RDB fork inside a measurement
    "auto-aof-rewrite-percentage": "0",  # nor an AOF rewrite
}
SEED_SQL = (
    "SELECT id, source_type, cui FROM prospects WHERE enrichment_status = 'pending' LIMIT 1000"
)
SEED_SQL_ALL = "SELECT id, source_type, cui FROM prospects WHERE enrichment_status = 'pending'"
WRAPPER = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "print(done.stdout)\n"
    "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,\n"
    "      done.returncode, file=sys.stderr)\n"
)


def vm_hwm_kb() -> int:
    """This process's peak RSS in kB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def seed_child(dsn: str, port: int, sql: str, max_adds: int) -> dict[str, Any]:
    """The seed's loop: one query, then one awaited add per row (auto ids)."""
    from bullmq import Queue

    queue = Queue("enrich-batch", {"connection": {"host": "127.0.0.1", "port": port}})
    started = time.perf_counter()
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(sql).fetchall()  # node-pg's pool.query: every row in memory
    fetched = time.perf_counter()
    added = 0
    for row in rows[:max_adds]:
        await queue.add("enrich", {"prospectId": row[0], "sourceType": row[1], "cui": row[2]})
        added += 1
    done = time.perf_counter()
    await queue.close()
    return {
        "selected": len(rows),
        "added": added,
        "query_s": fetched - started,
        "add_s": done - fetched,
        "rss_kb": vm_hwm_kb(),
    }


def run_ours(config: Path) -> dict[str, Any]:
    """The CLI as a process (in a wrapper that reports its wall time and peak RSS)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_RUNBOOK_")}
    argv = [sys.executable, "-m", "redis_runbook", "--config", str(config)]
    argv += ["--yes", "--json", "queues", "reconstruct", "--source", "enrich"]
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, *argv], capture_output=True, text=True, env=env, check=True
    )
    seconds, rss_kb, code = done.stderr.split()[-3:]
    if code != "0":
        raise RuntimeError(f"reconstruct failed: {done.stdout}")
    document = json.loads(done.stdout)
    figures = document["sources"][0]
    scan = document["scans"][0]["seconds"]
    return {**figures, "wall_s": float(seconds), "rss_kb": int(rss_kb), "scan_s": scan}


def run_seed(dsn: str, port: int, sql: str, max_adds: int) -> dict[str, Any]:
    """The seed's loop in a fresh process."""
    code = (
        "import asyncio, json, os, sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from bench_reconstruct import seed_child\n"
        "print(json.dumps(asyncio.run(seed_child(os.environ['BENCH_DSN'], int(sys.argv[2]),"
        " sys.argv[3], int(sys.argv[4])))))\n"
    )
    here = str(Path(__file__).parent)
    done = subprocess.run(  # the DSN (with its password) in the environment, not on argv
        [sys.executable, "-c", code, here, str(port), sql, str(max_adds)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "BENCH_DSN": dsn},
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _pending_rows(rows: int) -> int:
    """How many generated rows give `rows` pending ones (every 4th is not pending)."""
    total = rows * 4 // 3
    while total - total // 4 < rows:
        total += 1
    return total


def _setup(tmp: Path, rows: int) -> tuple[RedisServer, PostgresServer, str, Path]:
    server = RedisServer(tmp / "redis", settings=REDIS_SETTINGS)
    server.start()
    pg_dir = tmp / "pg"
    pg_dir.mkdir()
    tmp.chmod(0o711)  # our own temp dir: let the server's user through to pg/
    pg = PostgresServer(pg_dir / "cluster", settings=FAST_SETTINGS)
    pg.init(PASSWORD)
    pg.start()
    pg.create_database(PASSWORD)
    dsn = pg.dsn(PASSWORD)
    create_example(dsn, ExampleRows(prospects=_pending_rows(rows), outreach=0))
    dsn_file = tmp / "pg.dsn"
    dsn_file.write_text(dsn + "\n")
    dsn_file.chmod(0o600)
    config = tmp / "rr.toml"
    section = {"dsn_file": str(dsn_file), "sources": example_sources()[:1]}
    config.write_text(
        toml.dumps(
            {
                "target": {"url": f"redis://127.0.0.1:{server.port}/0", "command_timeout": 30.0},
                "runbook": {"state_dir": str(tmp / "state")},
                "reconstruct": section,
            }
        )
    )
    return server, pg, dsn, config


def _limit_rows(dsn: str, rows: int) -> None:
    """Keep only the first `rows` pending rows pending (the smaller run)."""
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "UPDATE prospects SET enrichment_status = 'parked' WHERE enrichment_status = 'pending'"
            " AND id > (SELECT id FROM prospects WHERE enrichment_status = 'pending'"
            " ORDER BY created_at, id OFFSET %s LIMIT 1)",
            (rows - 1,),
        )


def bench_reconstruct(rows: int, seed_rows: int, machine: str) -> None:
    """Run and print the reconstruct benchmark as a Markdown section."""
    with tempfile.TemporaryDirectory(prefix="rr-bench-") as tmp_name:
        tmp = Path(tmp_name)
        server, pg, dsn, config = _setup(tmp, rows)
        assert server.port is not None
        client = redis.Redis(port=server.port)
        try:
            ours = run_ours(config)
            assert ours["added"] == rows, ours
            info: Any = client.info("memory")
            memory = int(info["used_memory"])
            rerun = run_ours(config)
            client.flushall()
            seed_limit = run_seed(dsn, int(server.port or 0), SEED_SQL, 1000)
            client.flushall()
            seed_all = run_seed(dsn, int(server.port or 0), SEED_SQL_ALL, seed_rows)
            client.flushall()
            tenth = rows // 10
            _limit_rows(dsn, tenth)
            small = run_ours(config)
            assert small["added"] == tenth, small
        finally:
            client.close()
            server.stop(save=False)
            pg.stop()
    _print(rows, seed_rows, machine, ours, rerun, small, seed_limit, seed_all, memory)


def _print(
    rows: int,
    seed_rows: int,
    machine: str,
    ours: dict[str, Any],
    rerun: dict[str, Any],
    small: dict[str, Any],
    seed_limit: dict[str, Any],
    seed_all: dict[str, Any],
    memory: int,
) -> None:
    seed_rate = seed_all["added"] / seed_all["add_s"]

    def ours_row(label: str, run: dict[str, Any], jobs: int) -> str:
        enqueue = run["seconds"]
        return (
            f"| {label} | {jobs:,} | {run['wall_s']:.1f} s | {jobs / run['wall_s']:,.0f} | "
            f"{run['scan_s']:.1f} s + {enqueue:.1f} s ({run['jobs_per_s']:,}/s) | "
            f"{run['rss_kb'] / 1024:.0f} MB | {jobs / run['wall_s'] / seed_rate:.1f}x |"
        )

    print(f"## reconstruct (seed §5.3) — {time.strftime('%Y-%m-%d')}\n")
    print(
        f"{machine}; PostgreSQL {_pg_version()}; bullmq (Python) {_bullmq_version()}. "
        f"{rows:,} pending rows (and {rows // 3:,} done) in `prospects`; Redis with AOF everysec, "
        f"noeviction, no RDB/rewrite fork; {memory / 2**20:,.0f} MB used_memory after "
        f"{rows:,} jobs.\n"
    )
    print("| run | jobs | wall | jobs/s | scan + enqueue (enqueue rate) | peak RSS | vs seed |")
    print("|---|---|---|---|---|---|---|")
    print(ours_row("ours, empty Redis", ours, rows))
    print(ours_row("ours, again (all already present)", rerun, rows))
    print(ours_row(f"ours, {rows // 10:,} rows", small, rows // 10))
    print(
        f"| seed as written (`LIMIT 1000`, sequential `queue.add`) | {seed_limit['added']:,} of "
        f"{rows:,} ({rows - seed_limit['added']:,} dropped) | "
        f"{seed_limit['query_s'] + seed_limit['add_s']:.1f} s | "
        f"{seed_limit['added'] / seed_limit['add_s']:,.0f} | - | "
        f"{seed_limit['rss_kb'] / 1024:.0f} MB | - |"
    )
    print(
        f"| seed without `LIMIT` (query loads {seed_all['selected']:,} rows; first "
        f"{seed_all['added']:,} added) | {seed_all['added']:,} | "
        f"{seed_all['query_s'] + seed_all['add_s']:.1f} s | {seed_rate:,.0f} | "
        f"query {seed_all['query_s']:.1f} s | {seed_all['rss_kb'] / 1024:.0f} MB | 1.0x |"
    )
    print(
        f"\nAt the seed's rate, {rows:,} jobs would take {rows / seed_rate / 60:.1f} min "
        f"(ours: {ours['wall_s'] / 60:.1f} min, every job once, re-runnable)."
    )


def _pg_version() -> str:
    done = subprocess.run(
        [str(find_bindir() / "postgres"), "--version"], capture_output=True, text=True, check=False
    )
    parts = done.stdout.split()
    return parts[2] if len(parts) > 2 else "?"


def _bullmq_version() -> str:
    from importlib.metadata import version

    return version("bullmq")


if __name__ == "__main__":
    from run import machine

    bench_reconstruct(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000, 20_000, machine())
