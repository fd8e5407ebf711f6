"""Restore of a large dataset (seed §4.3): the whole `recover restore` against the sum
of its unavoidable parts measured alone — `borg extract` of the archive and
redis-server loading the RDB — so the overhead is what the tool itself adds
(checks, the swap, verification)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from redis_runbook import lab
from redis_runbook.lab.lifecycle import lab_server
from redis_runbook.lab.server import RedisServer
from redis_runbook.persistence.layout import set_conf_directive

VALUE_BYTES = 10_000


def _fill(client: redis.Redis, total_bytes: int) -> int:
    keys = total_bytes // VALUE_BYTES
    for start in range(0, keys, 1000):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(keys, start + 1000)):
            pipe.set(f"blob:{i}", os.urandom(VALUE_BYTES))
        pipe.execute()
    return keys


def _timed(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - started


def bench_restore(total_bytes: int, machine: str) -> None:
    """Print the restore table (Markdown)."""
    with tempfile.TemporaryDirectory(prefix="rr-bench-", dir="/var/tmp") as tmp:
        directory = Path(tmp) / "lab"
        status = lab.up(directory, maxmemory="4gb")
        assert status.port is not None
        client = redis.Redis(port=status.port)
        # RDB only (the seed's daily snapshot): a 1 GB AOF would double every part.
        client.config_set("appendonly", "no")
        set_conf_directive(directory / "redis.conf", "appendonly", "no")
        keys = _fill(client, total_bytes)
        used = int(client.info("memory")["used_memory"])  # type: ignore[index]
        env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_RUNBOOK_")}
        env.update(REDIS_RUNBOOK_CONFIG=str(status.config_path),
                   REDIS_RUNBOOK_RUNBOOK__STATE_DIR=str(Path(tmp) / "state"))  # fmt: skip
        cli = [sys.executable, "-m", "redis_runbook"]
        subprocess.run([*cli, "--yes", "backup", "create"], env=env, check=True,
                       capture_output=True)  # fmt: skip
        client.close()

        borg_env = {
            **env,
            "BORG_PASSCOMMAND": f"cat {shlex.quote(str(directory / 'borg.passphrase'))}",
        }
        repo = str(directory / "borg-repo")
        listing = subprocess.run(
            ["borg", "list", "--short", repo],
            env=borg_env,
            check=True,
            capture_output=True,
            text=True,
        )
        archive = listing.stdout.split()[-1]
        scratch = Path(tmp) / "extract-alone"
        scratch.mkdir()
        extract = _timed(["borg", "extract", f"{directory / 'borg-repo'}::{archive}"],
                         borg_env, cwd=scratch)  # fmt: skip
        server = RedisServer(Path(tmp) / "load-alone", settings={"appendonly": "no",
                                                                  "maxmemory": "4gb"})  # fmt: skip
        server.data_dir.mkdir(parents=True)
        (scratch / "dump.rdb").rename(server.data_dir / "dump.rdb")
        started = time.perf_counter()
        server.start(timeout=600)
        load = time.perf_counter() - started
        server.stop(save=False)

        # A restore happens to a Redis that is down (that is why one restores): stop it
        # first, so the run measures the restore and not a SHUTDOWN SAVE of 1 GB.
        lab_server(directory).stop(save=False)
        whole = _timed([*cli, "--yes", "recover", "restore", "--archive", archive,
                        "--i-understand-data-loss"], env)  # fmt: skip
        lab.down(directory)

    parts = extract + load
    print(f"## restore of a {used / 2**30:.1f} GiB dataset (seed §4.3) — "
          f"{time.strftime('%Y-%m-%d')}\n")  # fmt: skip
    print(f"{machine}; {keys:,} keys of {VALUE_BYTES:,} random bytes, RDB only, borg repokey "
          "(default lz4); one run.\n")  # fmt: skip
    print("| part | wall |")
    print("|---|---|")
    print(f"| `borg extract` alone | {extract:.1f} s |")
    print(f"| redis-server loading the RDB alone | {load:.1f} s |")
    print(f"| sum of the unavoidable parts | {parts:.1f} s |")
    print(f"| `redis-runbook recover restore`, whole | {whole:.1f} s |")
    print(f"\nOverhead: {(whole - parts) / parts * 100:.0f} % (goal <= 10 %).")
