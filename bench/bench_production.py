"""Production size (issue 13): a dataset of at least 4 GiB through the procedures an
incident needs, on the `process` backend and on the `compose` backend (a private
Docker engine as the tests start it, tests/support/docker_engine.py):

    recover restart -> backup create -> backup verify -> recover restore -> recover aof

each as a whole CLI process, the way an operator types it. Every step must exit 0
and leave every persistent key in place (DBSIZE compared with the filled count);
otherwise the run stops with the step's output. The table gives each step's seconds.

The data: a million small BullMQ-like job hashes (what per-key work and loading
count) and random 10 kB strings up to the size (what saving, copying and archiving
count; random bytes, so neither LZF nor borg's lz4 shrink them). AOF everysec with
an RDB preamble, as the seed runs Redis. For `recover aof`, Redis is killed with
SIGKILL and garbage appended to the last INCR file of the AOF.

For compose, the CLI runs with the host's Debian tools on PATH and the container
runs the Redis that is first on PATH here (run the bench with a Redis 8 build first
on PATH for the seed's platform)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from redis_runbook import lab
from redis_runbook.bgsave import wait_no_rewrite
from redis_runbook.lab.lifecycle import lab_server

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support.compose_app import write_app
from tests.support.docker_engine import DockerEngine, docker_engine

VALUE_BYTES = 10_000
SMALL_KEYS = 1_000_000  # at 4 GiB; fewer for a smaller run
BATCH = 1_000
GARBAGE = b"!garbage after the last command!\r\n"
STEP_TIMEOUT_S = 3_600.0
MAXMEMORY = "8gb"  # the seed's production limit


class StepFailed(RuntimeError):
    """A step exited non-zero or lost keys: the bench stops there."""


@dataclass
class Bed:
    """One Redis under test and how to reach, kill and drive it."""

    name: str
    port: int
    env: dict[str, str]
    data_dir: Path
    kill: Callable[[], None]
    keys: int = 0
    used_bytes: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=600)


def fill(client: redis.Redis, total_bytes: int) -> int:
    """Job hashes, then random strings until used_memory reaches `total_bytes`."""
    small = min(SMALL_KEYS, total_bytes // 4096 // BATCH * BATCH)
    for start in range(0, small, BATCH):
        pipe = client.pipeline(transaction=False)
        for i in range(start, start + BATCH):
            pipe.hset(f"bull:bench:{i}", mapping={
                "name": "enrich", "data": os.urandom(100).hex(),
                "timestamp": str(1_700_000_000_000 + i), "attemptsMade": "0",
            })  # fmt: skip
        pipe.execute()
    blob = 0
    while int(client.info("memory")["used_memory"]) < total_bytes:  # type: ignore[index]
        pipe = client.pipeline(transaction=False)
        for i in range(blob, blob + BATCH):
            pipe.set(f"cache:blob:{i}", os.urandom(VALUE_BYTES))
        pipe.execute()
        blob += BATCH
    wait_no_rewrite(client, STEP_TIMEOUT_S)
    return int(client.dbsize())  # type: ignore[arg-type]


def ready(bed: Bed, timeout: float = STEP_TIMEOUT_S) -> None:
    """Wait until Redis answers and has loaded its data."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with bed.client() as client:
                if client.info("persistence")["loading"] == 0:
                    return
        except redis.RedisError:
            pass
        time.sleep(0.2)
    raise StepFailed(f"{bed.name}: Redis on port {bed.port} not ready within {timeout:g} s")


def step(bed: Bed, label: str, *args: str) -> None:
    """Run one CLI command as a whole process, time it, check that it exited 0
    and that Redis serves every key afterwards."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "redis_runbook", *args],
        env=bed.env, capture_output=True, text=True, timeout=STEP_TIMEOUT_S,
        stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    bed.seconds[label] = time.perf_counter() - started
    if done.returncode != 0:
        output = done.stdout + done.stderr
        raise StepFailed(f"{bed.name}: {label} exited {done.returncode}:\n{output}")
    ready(bed)
    with bed.client() as client:
        keys = int(client.dbsize())
    if keys != bed.keys:
        raise StepFailed(f"{bed.name}: {keys:,} keys after {label}, {bed.keys:,} before")
    print(f"  {bed.name}: {label}: {bed.seconds[label]:.1f} s", file=sys.stderr, flush=True)


def corrupt_last_aof(bed: Bed) -> None:
    """SIGKILL Redis, then garbage after the last command of the last INCR file."""
    bed.kill()
    incr = sorted((bed.data_dir / "appendonlydir").glob("*.incr.aof"))[-1]
    with incr.open("ab") as handle:
        handle.write(GARBAGE)


def run_procedures(bed: Bed, total_bytes: int) -> None:
    """Fill, then every procedure in turn."""
    started = time.perf_counter()
    with bed.client() as client:
        bed.keys = fill(client, total_bytes)
        bed.used_bytes = int(client.info("memory")["used_memory"])
    bed.seconds["fill (not the tool)"] = time.perf_counter() - started
    print(f"  {bed.name}: {bed.keys:,} keys, {bed.used_bytes / 2**30:.2f} GiB", file=sys.stderr)
    step(bed, "recover restart", "--yes", "recover", "restart")
    step(bed, "backup create", "backup", "create")
    step(bed, "backup verify", "backup", "verify")
    step(bed, "recover restore", "--yes", "recover", "restore", "--force",
         "--i-understand-data-loss")  # fmt: skip
    corrupt_last_aof(bed)
    step(bed, "recover aof (SIGKILL + garbage)", "--yes", "recover", "aof")


def base_env(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_RUNBOOK_")}
    return env | {"REDIS_RUNBOOK_RUNBOOK__STATE_DIR": str(state)}


def process_bed(root: Path, total_bytes: int) -> Bed:
    """The lab's Redis (`process` backend) with AOF everysec and the seed's maxmemory."""
    directory = root / "lab"
    status = lab.up(directory, maxmemory=MAXMEMORY)
    assert status.port is not None
    server = lab_server(directory)  # the lab's settings: AOF everysec
    env = base_env(root / "state") | {"REDIS_RUNBOOK_CONFIG": str(status.config_path)}
    bed = Bed("process", status.port, env, server.data_dir, server.kill)
    try:
        run_procedures(bed, total_bytes)
    finally:
        server.stop(save=False)  # a 4 GiB SHUTDOWN SAVE would outlast the lab's timeout
    return bed


def compose_bed(root: Path, engine: DockerEngine, total_bytes: int) -> Bed:
    """The seed's compose layout on a private engine (tests/support/compose_app.py) with the
    seed's maxmemory: host network on 127.0.0.1, the data dir owned by 999:999, AOF
    everysec, a 2 minute stop grace."""
    app = write_app(root, engine, maxmemory=MAXMEMORY)

    def kill() -> None:
        app.compose("kill", "-s", "SIGKILL", "redis", timeout=STEP_TIMEOUT_S)

    bed = Bed(f"compose ({engine.redis_version})", app.port, app.env(), app.data, kill)
    app.compose("up", "-d", timeout=STEP_TIMEOUT_S)
    try:
        ready(bed)
        run_procedures(bed, total_bytes)
    finally:
        app.compose("down", "-t", "120", timeout=STEP_TIMEOUT_S)
    return bed


def bench_production(total_bytes: int, backends: list[str], machine: str) -> None:
    """Print the production-size table (Markdown)."""
    beds: list[Bed] = []
    with tempfile.TemporaryDirectory(prefix="rr-bench-prod-", dir="/var/tmp") as tmp:
        root = Path(tmp)
        if "process" in backends:
            beds.append(process_bed(root / "process", total_bytes))
        if "compose" in backends:
            with docker_engine() as engine:
                beds.append(compose_bed(root / "compose", engine, total_bytes))
    print(f"## production size: {total_bytes / 2**30:.1f} GiB through every procedure "
          f"(issue 13) — {time.strftime('%Y-%m-%d')}\n")  # fmt: skip
    print(f"{machine}; AOF everysec with an RDB preamble; "
          "one run; every step exited 0 and kept every key.\n")  # fmt: skip
    print("| step | " + " | ".join(bed.name for bed in beds) + " |")
    print("|---|" + "---|" * len(beds))
    print("| keys / used_memory | " + " | ".join(
        f"{bed.keys:,} / {bed.used_bytes / 2**30:.2f} GiB" for bed in beds) + " |")  # fmt: skip
    for label in beds[0].seconds:
        print(f"| {label} | " + " | ".join(f"{bed.seconds[label]:.1f} s" for bed in beds) + " |")
