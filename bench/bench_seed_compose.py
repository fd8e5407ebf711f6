"""seed-compose (issue 15 goal 6): the seed's commands as written — `docker compose exec
redis redis-cli …` — against the compose deployment of the platform issue (the `redis`
service of tests/support/compose_app.py on a private Docker engine,
tests/support/docker_engine.py), beside the redis-runbook commands that replace them,
each a whole process against the same container:

- §2.1 the health-check script (`docker compose ps redis`, then five `docker compose exec
  redis redis-cli …` with their greps and echos) vs `redis-runbook health --json`;
- §2.2 the quick-diagnostic one-liner (two `docker compose exec`) vs the same;
- §3.2 `docker compose exec redis redis-cli --scan --pattern 'cache:*' | xargs docker
  compose exec redis redis-cli DEL` vs `redis-runbook --yes keys purge --category cache`,
  on N `cache:*` keys among N `bull:*`/`session:*` keys: wall time, the time Redis spent
  in SCAN/DEL/UNLINK, and the PING latency another client sees (bench_oom's probe).

The seed's text runs verbatim in bash from the compose project's directory, as its
operator runs it (no `-f`, no `-p`: the project is the directory's name), with
DOCKER_HOST naming the private engine. What differs from the seed's host, outside the text:

- the service listens on a free port of 127.0.0.1 (host networking; never 6379), so the
  container's `redis-cli` is a wrapper that adds `-p PORT` (compose_app `seed_cli`);
- no terminal: the output goes to a pipe, so compose allocates no TTY and no `-T` is
  needed. In a terminal the §3.2 line as written fails: the `docker compose exec` that
  xargs starts has the terminal as stdout, so compose asks for a TTY, but xargs gives it
  /dev/null as stdin — "the input device is not a TTY", nothing deleted. The bench checks
  this once in a pseudo-terminal (`script`) on a few keys, with and without `-T` on the
  xargs side, and prints the result under the table.

As in bench_oom, RDB snapshots and AOF rewrites are turned off (CONFIG SET) so that no
fork lands in a measurement, and the cache is refilled before each purge. The seed's
health rows are checked (PONG, "Redis OK"), and each purge must leave exactly the other
keys, or the bench stops.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_oom import Run, fill, measure, percentile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support.compose_app import ComposeApp, write_app
from tests.support.docker_engine import docker_engine

#: Seed §2.1, verbatim.
SEED_HEALTH = """#!/bin/bash
# Script: redis-health-check.sh

echo "🔴 Redis Health Check"
echo "====================="

# 1. Container status
echo -e "\\n📦 Container Status:"
docker compose ps redis

# 2. Ping test
echo -e "\\n🏓 Ping Test:"
docker compose exec redis redis-cli ping

# 3. Memory info
echo -e "\\n💾 Memory Status:"
docker compose exec redis redis-cli info memory | grep -E "used_memory_human|maxmemory_human|mem_fragmentation"

# 4. Persistence status
echo -e "\\n💿 Persistence Status:"
docker compose exec redis redis-cli info persistence | grep -E "aof_enabled|aof_last|rdb_last"

# 5. Connected clients
echo -e "\\n👥 Connected Clients:"
docker compose exec redis redis-cli info clients | grep connected_clients

# 6. Key count
echo -e "\\n🔑 Key Statistics:"
docker compose exec redis redis-cli info keyspace"""  # noqa: E501
#: Seed §2.2, verbatim.
SEED_QUICK = """# One-liner health check
docker compose exec redis redis-cli ping && \\
docker compose exec redis redis-cli info memory | grep used_memory_human && \\
echo "Redis OK\""""
#: Seed §3.2, verbatim.
SEED_PURGE = (
    "docker compose exec redis redis-cli --scan --pattern 'cache:*' | "
    "xargs docker compose exec redis redis-cli DEL"
)
#: The same with `-T` on the xargs side: what works in a terminal.
SEED_PURGE_T = SEED_PURGE.replace(
    "xargs docker compose exec redis", "xargs docker compose exec -T redis"
)
OURS_HEALTH = ["health", "--json"]
OURS_PURGE = ["--yes", "keys", "purge", "--category", "cache"]
MAXMEMORY = "8gb"  # the seed's production limit
PROBE_KEYS = 1_000
MedianMs = Callable[[Callable[[], Any], int], float]
TIMEOUT_S = 3_600.0


class SeedFailed(RuntimeError):
    """A command did not do what it is there for: the bench stops."""


def bash(app: ComposeApp, script: str, terminal: bool = False) -> subprocess.CompletedProcess[str]:
    """A seed snippet in bash from the compose project's directory, output to a pipe;
    `terminal`: in a pseudo-terminal (`script`), as an operator's shell runs it."""
    argv = ["script", "-qec", script, "/dev/null"] if terminal else ["bash", "-c", script]
    env = app.env() | ({"SHELL": "/bin/bash"} if terminal else {})
    return subprocess.run(
        argv, cwd=app.dir, env=env, capture_output=True, text=True, timeout=TIMEOUT_S,
        stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip


def ours(app: ComposeApp, *args: str) -> subprocess.CompletedProcess[str]:
    """A redis-runbook command as a whole process, with the app's config."""
    return subprocess.run(
        [sys.executable, "-m", "redis_runbook", *args], env=app.env(), capture_output=True,
        text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip


def check_health(app: ComposeApp) -> str:
    """Each health command once, checked; returns `health --json`'s overall status."""
    seed = bash(app, SEED_HEALTH)
    for needed in ("PONG", "used_memory_human", "aof_enabled", "connected_clients", "db0:"):
        if needed not in seed.stdout:
            raise SeedFailed(f"seed §2.1: no {needed!r} in:\n{seed.stdout}{seed.stderr}")
    quick = bash(app, SEED_QUICK)
    if quick.returncode != 0 or "Redis OK" not in quick.stdout:
        raise SeedFailed(f"seed §2.2 exited {quick.returncode}:\n{quick.stdout}{quick.stderr}")
    done = ours(app, *OURS_HEALTH)
    if done.returncode not in (0, 1, 2):
        raise SeedFailed(f"health --json exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return str(json.loads(done.stdout).get("status", f"exit {done.returncode}"))


def cache_left(app: ComposeApp, others: int) -> int:
    with app.client() as client:
        return int(client.dbsize()) - others


def probe_terminal(app: ComposeApp, others: int) -> str:
    """Seed §3.2 in a pseudo-terminal on a few keys: as written, then with `-T`."""
    results = []
    with app.client() as client:
        for label, script in (
            ("as written", SEED_PURGE),
            ("with `-T` on the xargs side", SEED_PURGE_T),
        ):
            fill(client, "cache:", PROBE_KEYS)
            done = bash(app, script, terminal=True)
            said = " ".join(done.stdout.split())[-60:]
            results.append(
                f"{label}: exit {done.returncode}, {cache_left(app, others):,} of "
                f"{PROBE_KEYS:,} cache keys left" + (f' ("{said}")' if done.returncode else "")
            )
            client.delete(*[f"cache:{i}" for i in range(PROBE_KEYS)])
    return "; ".join(results)


def purge_run(app: ComposeApp, keys: int, what: str, work: Callable[[], Any]) -> Run:
    """Refill the `keys` cache keys, purge under the PING probe, check that only the
    cache went (as many other keys)."""
    with app.client() as client:
        fill(client, "cache:", keys)
        run = measure(client, app.port, what, work)
    left = cache_left(app, keys)
    if left != 0:
        raise SeedFailed(f"{what}: {left:,} keys more (or fewer) than the {keys:,} others")
    return run


def checked(label: str, done: subprocess.CompletedProcess[str]) -> None:
    if done.returncode != 0:
        raise SeedFailed(f"{label} exited {done.returncode}:\n{done.stdout}{done.stderr}")


@dataclass
class Results:
    """What one run measured."""

    keys: int
    runs: int
    versions: str = ""
    fill_s: float = 0.0
    status: str = ""
    health_ms: dict[str, float] = field(default_factory=dict)
    terminal: str = ""
    purges: dict[str, Run] = field(default_factory=dict)


def measure_all(app: ComposeApp, out: Results, median_ms: MedianMs) -> None:
    """Fill, check, then time the health commands and the purges."""
    with app.client() as client:
        client.config_set("save", "")
        client.config_set("auto-aof-rewrite-percentage", "0")
        started = time.perf_counter()
        fill(client, "bull:bench:", out.keys // 2)
        fill(client, "session:", out.keys - out.keys // 2)
        out.fill_s = time.perf_counter() - started
    out.status = check_health(app)
    out.health_ms = {
        "seed §2.1": median_ms(lambda: bash(app, SEED_HEALTH), out.runs),
        "seed §2.2": median_ms(lambda: bash(app, SEED_QUICK), out.runs),
        "ours": median_ms(lambda: ours(app, *OURS_HEALTH), out.runs),
    }
    out.terminal = probe_terminal(app, out.keys)
    out.purges["seed"] = purge_run(
        app, out.keys, "seed", lambda: checked("seed §3.2", bash(app, SEED_PURGE))
    )
    out.purges["ours"] = purge_run(
        app, out.keys, "ours", lambda: checked("keys purge", ours(app, *OURS_PURGE))
    )


def bench_seed_compose(keys: int, runs: int, machine: str, median_ms: MedianMs) -> None:
    """Bring up the compose deployment, run the seed's commands and ours, print the table.
    `keys` cache keys are purged from among as many others."""
    out = Results(keys, runs)
    with (
        tempfile.TemporaryDirectory(prefix="rr-bench-seedc-", dir="/var/tmp") as tmp,
        docker_engine() as engine,
    ):
        app = write_app(Path(tmp) / "app", engine, maxmemory=MAXMEMORY, seed_cli=True)
        docker = engine.docker("version", "-f", "{{.Server.Version}}").stdout.strip()
        compose = engine.docker("compose", "version", "--short").stdout.strip()
        out.versions = f"Docker {docker} / Compose {compose}"
        app.compose("up", "-d")
        try:
            app.wait_ready()
            measure_all(app, out, median_ms)
        finally:
            app.compose("down", "-t", "120", timeout=TIMEOUT_S)
    print_table(out, machine, engine.redis_version)


def print_table(out: Results, machine: str, redis_version: str) -> None:
    """The Markdown section."""

    def busy(run: Run) -> str:
        total = sum(seconds for _, seconds in run.busy.values())
        parts = " + ".join(f"{name} x{calls:,}" for name, (calls, _) in run.busy.items())
        return f"{total:.2f} s ({parts})"

    def pings(run: Run) -> str:
        return f"{percentile(run.pings, 99):.1f} / {max(run.pings):.1f} ms"

    seed, ours_ = out.purges["seed"], out.purges["ours"]
    assert seed.seconds is not None
    assert ours_.seconds is not None
    date = time.strftime("%Y-%m-%d")
    print(f"## seed-compose: the seed's commands as written vs redis-runbook (issue 15) — {date}\n")
    print(
        f"{machine}. The compose service `redis` (Redis {redis_version}, host network, "
        f"127.0.0.1, AOF everysec, noeviction, maxmemory {MAXMEMORY}) on a private "
        f"{out.versions} engine; the seed's text run verbatim by bash from the project's "
        "directory, its output to a pipe (no TTY, so no `-T`); the container's `redis-cli` "
        f"adds `-p PORT` (never 6379). Health: {out.runs} runs each, medians (`health --json` "
        f"said {out.status}). Purge: one run each, {out.keys:,} `cache:*` keys among "
        f"{out.keys:,} `bull:*`/`session:*` keys (64-byte strings, the others filled in "
        f"{out.fill_s:.1f} s), the cache refilled before each run; no RDB/rewrite forks. "
        "Redis busy: INFO commandstats. PING: another client every 1 ms on the host, "
        "corrected for coordinated omission (bench_oom).\n"
    )
    print("| part | seed as written | redis-runbook | seed ÷ redis-runbook |")
    print("|---|---|---|---|")
    ours_ms = out.health_ms["ours"]
    for label, key in (
        ("§2.1 health-check script (`docker compose ps` + 5 `docker compose exec`) "
         "vs `health --json`", "seed §2.1"),
        ("§2.2 quick diagnostic (2 `docker compose exec`) vs `health --json`", "seed §2.2"),
    ):  # fmt: skip
        seed_ms = out.health_ms[key]
        print(f"| {label} | {seed_ms:.0f} ms | {ours_ms:.0f} ms | {seed_ms / ours_ms:.1f}x |")
    ratio = seed.seconds / ours_.seconds
    print(
        f"| §3.2 purge `cache:*`: wall time | {seed.seconds:.1f} s | {ours_.seconds:.1f} s "
        f"| {ratio:.1f}x |"
    )
    print(f"| §3.2 purge: Redis busy | {busy(seed)} | {busy(ours_)} | - |")
    print(
        f"| §3.2 purge: PING p99 / max another client sees | {pings(seed)} | {pings(ours_)} | - |"
    )
    print(f"\nSeed §3.2 as run: `{SEED_PURGE}`; ours: `redis-runbook {' '.join(OURS_PURGE)}`.")
    print(
        f"\nIn a terminal (a pseudo-terminal, `script`), seed §3.2 on {PROBE_KEYS:,} cache "
        f"keys — {out.terminal}."
    )
