"""A canary password in [target] url — in a URL that is invalid, valid and refused,
valid and down, valid and right — never appears in anything a command prints, with
-v and --json or without. Every command that reads the target runs as a process."""

from __future__ import annotations

from pathlib import Path

import pytest

from redis_runbook.lab.server import RedisServer
from redis_runbook.ports import free_port
from tests.support.cli import run_cli
from tests.support.config import write_config
from tests.support.servers import RedisFactory

CANARY = "CANARY-k9Zq-pw"

# Every command that reaches (or would reach) the target; mutating ones as --dry-run.
COMMANDS: list[tuple[str, ...]] = [
    ("health",),
    ("diagnose", "--check-timeout", "0"),
    ("monitor", "--once"),
    ("config", "show"),
    ("config", "validate"),
    ("keys", "stats"),
    ("queues", "status"),
    ("clients", "list"),
    ("perf", "report"),
    ("checklist", "daily"),
    ("workers", "verify", "--passive", "--sample", "0.1"),
    ("backup", "list"),
    ("journal",),
    ("--dry-run", "recover", "restart"),
    ("--dry-run", "keys", "purge", "--category", "cache"),
    ("--dry-run", "failover"),
]
MODES: list[tuple[str, ...]] = [(), ("-v", "--json")]


def leaks(
    tmp_path: Path,
    url: str,
    commands: list[tuple[str, ...]] = COMMANDS,
    *,
    alternate: bool = False,
) -> list[str]:
    """Run `commands` in every mode (`alternate`: one mode each, in turn) against a
    config whose url is `url`; the runs whose output holds the canary."""
    config = write_config(
        tmp_path / "canary.toml",
        {
            "target": {"url": url, "connect_timeout": 1},
            "runbook": {"state_dir": str(tmp_path / "state")},
            "service": {"kind": "process", "data_dir": str(tmp_path / "data")},
        },
    )
    env = {"XDG_STATE_HOME": str(tmp_path / "xdg")}
    found = []
    for index, command in enumerate(commands):
        for mode in [MODES[index % len(MODES)]] if alternate else MODES:
            args = ("--config", str(config), *mode, *command)
            result = run_cli(*args, env=env)
            output = result.stdout + result.stderr
            assert "Traceback" not in output, (args, output)
            if CANARY in output:
                line = next(line for line in output.splitlines() if CANARY in line)
                found.append(f"{' '.join(args[2:])}: {line}")
    return found


def secured(redis_factory: RedisFactory, tmp_path: Path, password: str) -> RedisServer:
    """A requirepass server (the lab reaches it through a password file)."""
    secret = tmp_path / "server.pw"
    secret.write_text(password + "\n")
    return redis_factory({"requirepass": password}, {"password_file": secret})


def test_canary_in_an_invalid_url_is_never_printed(tmp_path: Path) -> None:
    assert leaks(tmp_path, f"http://u:{CANARY}@127.0.0.1:1/0") == []


@pytest.mark.parametrize(
    "url",
    [
        f"redis://u:{CANARY}@127.0.0.1:70000/0",
        f"redis://:{CANARY}@127.0.0.1:abc/0",
        f"rediss://:{CANARY}@127.0.0.1:6379/notadb",
        f"unix://u:{CANARY}@/nonexistent/redis.sock?db=x",
        f"redis://u:{CANARY}/x@127.0.0.1:6379/0",
    ],
    ids=["port-range", "port-text", "db-text", "unix-db", "slash-in-password"],
)
def test_canary_in_other_invalid_urls_is_never_printed(tmp_path: Path, url: str) -> None:
    # Every command loads the config the same way first: three of them stand for all.
    some = [("health",), ("config", "show"), ("config", "validate")]
    assert leaks(tmp_path, url, some) == []


def test_canary_in_a_valid_url_of_a_down_server_is_never_printed(tmp_path: Path) -> None:
    assert leaks(tmp_path, f"redis://u:{CANARY}@127.0.0.1:{free_port()}/0") == []


def test_canary_refused_by_the_server_is_never_printed(
    tmp_path: Path, redis_factory: RedisFactory
) -> None:
    server = secured(redis_factory, tmp_path, "another-password")
    url = f"redis://:{CANARY}@127.0.0.1:{server.port}/0"
    assert leaks(tmp_path, url, alternate=True) == []


def test_canary_accepted_by_the_server_is_never_printed(
    tmp_path: Path, redis_factory: RedisFactory
) -> None:
    server = secured(redis_factory, tmp_path, CANARY)
    assert leaks(tmp_path, f"redis://:{CANARY}@127.0.0.1:{server.port}/0") == []
    # and with a db the server does not have
    assert leaks(tmp_path, f"redis://:{CANARY}@127.0.0.1:{server.port}/99", alternate=True) == []
