"""The exit codes the README documents, command by command, checked by running the
real CLI against real servers: a live redis-server, one that was killed (nothing
listens on its port any more), an invalid config file, and a `password_command`
that fails. Every command row of the README's table has an entry here, and the
README's exit-code cell of that row names every code this table expects."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from bullmq import Queue

from redis_runbook.lab.server import RedisServer
from tests.support.cli import run_cli
from tests.support.config import merged, process_service, write_config
from tests.support.paths import ROOT

README = ROOT / "README.md"

# The conditions, each a config file written by the `world` fixture:
#   ok      a live server ([service] kind process on its files), an empty backup dir
#   down    the same for a server that was killed: its port refuses connections
#   bad     an invalid config file (warning above critical)
#   secret  the live server, with a password_command that exits 1
Condition = str
CONDITIONS = ("ok", "down", "bad", "secret")


@dataclass(frozen=True)
class Row:
    """One README command and the documented exit code under each condition."""

    command: str  # the README row's command word(s), e.g. "keys stats"
    args: tuple[str, ...]  # what to run (global options included)
    codes: dict[Condition, int]


def row(command: str, *extra: str, **codes: int) -> Row:
    """`command` run as written plus `extra` arguments; global options go in `extra`
    before a `--` marker: row("keys purge", "--dry-run", "--", "--category", "cache")."""
    before, after = (
        (extra[: extra.index("--")], extra[extra.index("--") + 1 :])
        if "--" in (extra)
        else ((), extra)
    )
    return Row(command, (*before, *command.split(), *after), codes)


ROWS = [
    row("health", ok=0, down=2, bad=2, secret=3),
    row("config show", ok=0, bad=2),
    row("config validate", ok=0, bad=2),
    row("diagnose", down=2, bad=2, secret=3),
    row("recover restart", ok=3, down=3, bad=2),  # no terminal, no --yes: refused
    row("recover aof", "--dry-run", "--", ok=3, bad=2),  # refused on a running Redis
    row("recover emergency-start", ok=3, down=3, bad=2),
    row("recover restore", "--dry-run", "--", down=2, bad=2),  # no archive: unknown
    row("recover oom", down=1, bad=2, secret=2),
    row("recover oom", "--dry-run", "--", "--category", "nope", ok=2),  # unknown category
    row("keys stats", ok=0, down=1, bad=2, secret=2),
    row("keys purge", "--", "--category", "cache", ok=3, down=1, bad=2, secret=2),
    row("keys purge", "--", "--category", "nope", ok=2),  # unknown category
    row("clients list", ok=0, down=1, bad=2, secret=2),
    row("clients kill", "--", "--id", "999999", ok=2, down=1, bad=2, secret=2),  # unknown id
    row("perf report", ok=0, down=1, bad=2, secret=2),
    row("queues status", ok=0, down=1, bad=2, secret=2),
    row("queues status", "--", "--queue", "nope", ok=2),  # unknown queue
    row("queues recover-stale", "--dry-run", "--", ok=0, down=1, bad=2, secret=2),
    row("queues reconstruct", ok=2, bad=2),  # no [[reconstruct.sources]]
    row("queues pause", "--dry-run", "--", "--all", ok=0, down=1, bad=2, secret=2),
    row("queues pause", "--", "--all", ok=3),  # no terminal, no --yes: refused
    row("queues pause", "--", "--queue", "nope", ok=2),  # unknown queue
    row("queues pause", ok=2),  # neither --queue nor --all
    row("queues resume", "--dry-run", "--", "--all", ok=0, down=1, bad=2, secret=2),
    row("queues resume", "--", "--all", "--queue", "work", ok=2),  # both
    row("queues failed", ok=0, down=1, bad=2, secret=2),
    row("queues failed", "--", "--since", "yesterday", ok=2),  # bad time
    row("queues retry-failed", ok=0, down=1, bad=2, secret=2),  # nothing failed: no prompt
    row("queues retry-failed", "--", "--queue", "nope", ok=2),  # unknown queue
    row("queues retry-failed", "--", "--reason", "(", ok=2),  # invalid regex
    row("workers verify", "--", "--passive", "--sample", "0.1", ok=2, down=1, bad=2, secret=1),
    row("backup create", "--dry-run", "--", ok=0, bad=2, secret=2),
    row("backup create", "--yes", "--", down=1),  # BGSAVE step fails
    row("backup list", ok=0, bad=2),
    row("backup verify", ok=2, bad=2),  # no archive to verify
    row("failover", "--dry-run", "--", ok=3, down=3, bad=2, secret=2),  # no replica: refused
    row("monitor", "--", "--once", ok=0, down=0, bad=2, secret=0),
    row("exporter", "--", "--listen", "nowhere", ok=2, bad=2),  # bad --listen
    row("exporter", "--", "--listen", "10.1.2.3:9121", ok=3),  # not loopback: refused
    row("alerts rules", ok=0, bad=2),
    row("checklist daily", ok=0, down=2, bad=2, secret=3),
    row("checklist weekly", down=2, bad=2, secret=2),  # no archive: CRITICAL item
    row("checklist monthly", down=2, bad=2, secret=2),
    row("journal", ok=0, bad=2),
]
# Commands that report what they cannot check (an UNKNOWN, an alert), never an error.
CHECKS = ("health", "diagnose", "checklist", "monitor")
# Lab commands read no config: their own conditions (see test_lab_exit_codes).
LAB_COMMANDS = ("lab up", "lab seed", "lab status", "lab down", "lab break", "lab demo")


@dataclass(frozen=True)
class World:
    configs: dict[Condition, Path]
    env: dict[str, str]


def _config(server: RedisServer, state: Path, **target: Any) -> dict[str, Any]:
    return {
        "target": {"url": server.target().url, "connect_timeout": 1.0, **target},
        "service": {
            **process_service(server),
            "owner": f"{os.getuid()}:{os.getgid()}",
            "log_file": str(server.log_path),
        },
        "runbook": {"state_dir": str(state)},
        "backup": {"kind": "directory", "repository": str(state.parent / "backups")},
        "thresholds": {"latency_ms": {"warning": 500, "critical": 1000}},
    }


async def _one_queue(port: int) -> None:
    queue = Queue("work", {"connection": {"host": "127.0.0.1", "port": port}})
    await queue.add("job", {"n": 1})
    await queue.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("exit-codes")
    live = RedisServer(root / "live")
    dead = RedisServer(root / "dead")
    try:
        live.start()
        dead.start()
        dead.kill()
        assert live.port is not None
        asyncio.run(_one_queue(live.port))
        (root / "backups").mkdir()
        state = root / "state"
        bad = {"thresholds": {"memory_pct": {"warning": 95, "critical": 85}}}
        documents = {
            "ok": _config(live, state),
            "down": _config(dead, state),
            "bad": merged(_config(live, state), bad),
            "secret": _config(live, state, password_command=["sh", "-c", "exit 1"]),
        }
        configs = {}
        for name, document in documents.items():
            configs[name] = write_config(root / f"{name}.toml", document)
        env = {"XDG_STATE_HOME": str(root / "xdg"), "REDIS_RUNBOOK_RUNBOOK__STATE_DIR": str(state)}
        yield World(configs, env)
    finally:
        for server in (live, dead):
            if server.process is not None and server.process.poll() is None:
                server.kill()


CASES = [(r, condition) for r in ROWS for condition in CONDITIONS if condition in r.codes]


@pytest.mark.parametrize(
    ("entry", "condition"),
    CASES,
    ids=[f"{' '.join(r.args)}-{condition}" for r, condition in CASES],
)
def test_documented_exit_code(world: World, entry: Row, condition: Condition) -> None:
    result = run_cli(
        "--config", str(world.configs[condition]), *entry.args, env=world.env, timeout=120
    )
    expected = entry.codes[condition]
    assert result.returncode == expected, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    if expected in (2, 3) and "error:" in result.stderr:
        assert "HINT: " in result.stderr  # every error names the next step
    if entry.command.startswith(CHECKS) and condition in ("down", "secret"):
        assert "error:" not in result.stderr, result.stderr  # a report, not an error


def readme_rows() -> dict[str, str]:
    """README command-table rows: the command words (before the first option) ->
    the exit-codes cell."""
    rows: dict[str, str] = {}
    for line in README.read_text().splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        words: list[str] = []
        for word in cells[0].strip("`").split():
            if word.startswith("daily"):  # `checklist daily\|weekly\|monthly`
                for period in ("daily", "weekly", "monthly"):
                    rows[f"checklist {period}"] = cells[2]
                words = []
                break
            if word.startswith(("[", "-", "<")) or not re.fullmatch(r"[a-z][a-z-]*", word):
                break
            words.append(word)
        if words:
            rows[" ".join(words)] = cells[2]
    return rows


def test_every_readme_command_has_documented_codes_and_a_row_here() -> None:
    documented = readme_rows()
    tested = {r.command for r in ROWS} | set(LAB_COMMANDS)
    assert set(documented) == tested, set(documented) ^ tested
    for entry in ROWS:
        cell = documented[entry.command]
        numbers = {int(n) for n in re.findall(r"\b[0-3]\b", cell)}
        for condition, code in entry.codes.items():
            assert code in numbers, f"README `{entry.command}` does not name {code} ({condition})"


def test_global_json_and_local_json_are_the_same_documents(world: World) -> None:
    config = str(world.configs["ok"])
    for command in (["checklist", "daily"], ["monitor", "--once"]):
        local = run_cli("--config", config, *command, "--json", env=world.env)
        global_ = run_cli("--config", config, "--json", *command, env=world.env)
        assert local.returncode == global_.returncode == 0, local.stderr + global_.stderr
        assert local.stdout.lstrip().startswith("{"), local.stdout
        assert global_.stdout.lstrip().startswith("{"), global_.stdout


def test_lab_exit_codes(tmp_path: Path) -> None:
    lab = str(tmp_path / "lab")
    assert run_cli("lab", "status", "--dir", lab).returncode == 1  # not running
    assert run_cli("lab", "down", "--dir", lab).returncode == 1  # no lab there
    assert run_cli("lab", "seed", "--dir", lab).returncode == 1  # not running
    assert run_cli("lab", "break", "nope", "--dir", lab).returncode == 2  # unknown scenario
    try:
        assert run_cli("lab", "up", "--dir", lab).returncode == 0
        assert run_cli("lab", "status", "--dir", lab).returncode == 0
    finally:
        assert run_cli("lab", "down", "--dir", lab).returncode == 0
