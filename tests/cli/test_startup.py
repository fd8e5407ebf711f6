"""Start-up (issue 15): what the CLI imports for what it is asked. `--version` loads
neither typer nor the library; `--help` at every level builds the commands without
redis or the configuration (pydantic); a `--json` report never loads Rich's tables, and
`health --json` loads none of Rich, Sentinel, the topology checks, the stall probe or
BullMQ's parsers, and leaves its objects frozen for the exit. Checked on the real
process — `python -m redis_runbook` run by a wrapper that writes the process's
`sys.modules` and gc freeze count to a file at exit — never on timing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from redis_runbook import __version__
from redis_runbook.lab.server import RedisServer
from tests.support.cli import process_cli

# What `--help` must not load: redis-py, and the configuration (the library's one user
# of pydantic; tests/test_architecture.py keeps it so).
LIBRARY = ("redis", "redis_runbook.config")
TABLES = ("rich.table",)
# What `health --json` on a target without Sentinel or listed replicas does not load:
# Rich (it writes its document with json.dumps), the topology checks and Sentinel
# (for targets with them), the stall probe (for a server that answers BUSY), BullMQ's
# parsers (for [[reconstruct.sources]], which has none). Each one it did load once.
NOT_FOR_HEALTH_JSON = (
    "rich",
    "redis_runbook.bullmq",
    "redis_runbook.target.sentinel",
    "redis_runbook.target.topology",
    "redis_runbook.checks.topology",
    "redis_runbook.checks.replicas",
    "redis_runbook.stall",
)
# The library modules `--help` may load: plain ones importing nothing heavy.
FLOOR = {
    "redis_runbook",
    "redis_runbook.defaults",
    "redis_runbook.errors",
    "redis_runbook.fault_catalogue",
    "redis_runbook.redaction",
    "redis_runbook.status",
    "redis_runbook.units",
}

# `python -m redis_runbook ARGS`, then the modules it imported and how many objects it
# froze out of the cycle collector, written to MODULES_FILE however it ended (an exit
# code is a SystemExit).
WRAPPER = """
import gc, json, os, runpy, sys
code = 0
try:
    runpy.run_module("redis_runbook", run_name="__main__", alter_sys=True)
except SystemExit as exit:
    code = exit.code
with open(os.environ["MODULES_FILE"], "w") as out:
    json.dump({"modules": sorted(sys.modules), "frozen": gc.get_freeze_count()}, out)
sys.exit(code)
"""


@dataclass(frozen=True)
class Started:
    """One CLI process: its exit code, output, every module it imported and the
    objects it left frozen for the exit."""

    returncode: int
    stdout: str
    stderr: str
    modules: frozenset[str]
    frozen: int

    def imported(self, packages: Iterable[str]) -> list[str]:
        """The modules of `packages` (a package or any of its submodules) it imported."""
        return sorted(m for m in self.modules for p in packages if m == p or m.startswith(p + "."))

    def library(self) -> set[str]:
        """The modules of redis_runbook outside the CLI it imported."""
        cli = set(self.imported(["redis_runbook.cli"]))
        return set(self.imported(["redis_runbook"])) - cli


def start(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Started:
    """`redis-runbook ARGS` as a new process (`python -m`), stdin closed, without the
    caller's REDIS_RUNBOOK_* variables."""
    modules_file = tmp_path / "modules.json"
    base = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_RUNBOOK_")}
    result = subprocess.run(
        [sys.executable, "-c", WRAPPER, *args],
        capture_output=True,
        text=True,
        env=base | (env or {}) | {"MODULES_FILE": str(modules_file)},
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )
    seen = json.loads(modules_file.read_text())
    return Started(
        result.returncode, result.stdout, result.stderr, frozenset(seen["modules"]), seen["frozen"]
    )


def test_the_module_list_is_the_processs(tmp_path: Path) -> None:
    """The wrapper sees what a command really imports (else every test here would pass
    on an empty list): the command module, imported by name when it runs."""
    started = start(tmp_path, "health", "--help")
    assert {"redis_runbook.cli", "redis_runbook.cli.health", "typer"} <= started.modules
    assert "redis_runbook.cli.queues" not in started.modules  # only the command asked for


def test_version_loads_neither_typer_nor_the_library(tmp_path: Path) -> None:
    started = start(tmp_path, "--version")
    assert (started.returncode, started.stdout) == (0, f"redis-runbook {__version__}\n")
    assert started.imported(["typer", "rich", "pydantic", *LIBRARY]) == []


def test_version_after_a_global_option_is_still_answered(tmp_path: Path) -> None:
    started = start(tmp_path, "--json", "--version")
    assert (started.returncode, started.stdout) == (0, f"redis-runbook {__version__}\n")


def test_help_loads_neither_redis_nor_pydantic(tmp_path: Path) -> None:
    started = start(tmp_path, "--help")
    assert started.returncode == 0, started.stderr
    for name in ("health", "diagnose", "recover", "queues", "workers", "lab", "config"):
        assert f"  {name} " in started.stdout, name
    assert started.imported(["pydantic", *LIBRARY]) == []
    assert started.library() <= FLOOR


@pytest.mark.parametrize(
    ("args", "listed"),
    [
        (("health", "--help"), ("--json", "--watch")),
        (("recover", "--help"), ("restart", "emergency-start", "aof", "restore", "oom")),
        (("recover", "restart", "--help"), ("--no-save",)),
        (
            ("queues", "--help"),
            ("status", "recover-stale", "reconstruct", "pause", "resume", "retry-failed"),
        ),
        (("queues", "failed", "--help"), ("--since", "--until", "--json")),
        (("queues", "retry-failed", "--help"), ("--reason", "--name", "--limit")),
        (("keys", "purge", "--help"), ("--category", "--batch", "--max-ops-per-s")),
        (("workers", "verify", "--help"), ("--canary", "__runbook_canary__")),
        (("checklist", "--help"), ("daily", "weekly", "monthly")),
        (("lab", "break", "--help"), ("aof-garbage-last", "blocked-clients", "heal")),
    ],
    ids=" ".join,
)
def test_command_help_builds_the_command_without_the_library(
    tmp_path: Path, args: tuple[str, ...], listed: tuple[str, ...]
) -> None:
    """Only the CLI and the floor's plain modules load. (typer 0.29 itself imports
    pydantic here: it coerces the global --config value with a TypeAdapter.)"""
    started = start(tmp_path, *args)
    assert started.returncode == 0, started.stderr
    for word in listed:
        assert word in started.stdout, word
    assert started.imported(LIBRARY) == []
    assert started.library() <= FLOOR


def test_health_json_never_loads_rich_tables(tmp_path: Path, redis_server: RedisServer) -> None:
    env = process_cli(tmp_path, redis_server)
    started = start(tmp_path, "--config", str(env.config), "health", "--json", env=env.env)
    document = json.loads(started.stdout)
    assert started.returncode == document["exit_code"], started.stderr
    assert document["status"] in ("OK", "WARNING", "CRITICAL", "UNKNOWN")
    assert "redis" in started.modules  # it did talk to Redis
    assert started.imported(TABLES) == []


def test_health_json_loads_none_of_what_it_does_not_use(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    env = process_cli(tmp_path, redis_server)
    started = start(tmp_path, "--config", str(env.config), "health", "--json", env=env.env)
    assert json.loads(started.stdout)["checks"], started.stderr
    assert {"redis", "redis_runbook.config", "redis_runbook.checks"} <= started.modules
    assert started.imported(NOT_FOR_HEALTH_JSON) == []


def test_health_json_leaves_its_objects_out_of_the_exits_collections(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """The interpreter's exit collects every object still alive, which the process is
    about to give back anyway: the CLI freezes them first (cli/__init__.py main)."""
    env = process_cli(tmp_path, redis_server)
    started = start(tmp_path, "--config", str(env.config), "health", "--json", env=env.env)
    assert json.loads(started.stdout)["checks"], started.stderr
    assert started.frozen > 10_000  # redis, typer, pydantic and ours: ~45,000


def test_keys_stats_json_never_loads_rich_tables(tmp_path: Path, redis_server: RedisServer) -> None:
    """A keyspace walk with --json draws no progress bars (rich.progress is tables)."""
    env = process_cli(tmp_path, redis_server)
    started = start(tmp_path, "--config", str(env.config), "--json", "keys", "stats", env=env.env)
    assert started.returncode == 0, started.stderr
    assert "categories" in json.loads(started.stdout)
    assert started.imported(TABLES) == []
