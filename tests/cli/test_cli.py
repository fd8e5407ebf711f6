"""The CLI as a user (or cron) runs it: exit codes, --json, secrets, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from redis_runbook.lab.server import RedisServer
from redis_runbook.lab.topology import start_topology
from tests.support.cli import run_cli
from tests.support.config import merged, write_config
from tests.support.servers import HEALTH_JSON_KEYS, RedisFactory, info, plain_client
from tests.support.waiting import wait_until

PASSWORD = "correct-horse-battery-staple-7"


@pytest.fixture
def secured(tmp_path: Path, redis_factory: RedisFactory) -> RedisServer:
    """A server with requirepass; the tool reads the password from a file."""
    password_file = tmp_path / "redis.pw"
    password_file.write_text(PASSWORD + "\n")
    return redis_factory(
        settings={"requirepass": PASSWORD}, target_overrides={"password_file": str(password_file)}
    )


def server_config(
    tmp_path: Path, server: RedisServer, extra: Mapping[str, Any] | None = None
) -> Path:
    """tmp_path/cfg.toml aimed at `server` (its password file too), plus `extra`."""
    target = server.target()
    section = {"url": target.url, "password_file": target.password_file}
    return write_config(tmp_path / "cfg.toml", merged({"target": section}, extra))


# A single PING on a busy 2-core CI machine can exceed the seed's 1 ms warning;
# these tests are about exit codes, so latency gets room.
RELAXED_LATENCY = {"thresholds": {"latency_ms": {"warning": 500, "critical": 1000}}}


def test_health_ok_json_and_exit_code(tmp_path: Path, secured: RedisServer) -> None:
    config = server_config(tmp_path, secured, RELAXED_LATENCY)
    result = run_cli("--config", str(config), "health", "--json")
    document = json.loads(result.stdout)
    assert result.returncode == 0 == document["exit_code"], result.stdout
    assert set(document) == HEALTH_JSON_KEYS
    assert document["round_trips"] <= 3
    assert {c["name"] for c in document["checks"]} >= {"memory", "maxmemory_policy", "aof"}
    assert PASSWORD not in result.stdout + result.stderr
    # The global --json works too, and the human table names every check.
    assert json.loads(run_cli("--config", str(config), "--json", "health").stdout)
    human = run_cli("--config", str(config), "health")
    assert human.returncode == 0
    assert "ping_latency" in human.stdout
    assert "overall OK" in human.stdout


def test_health_exit_code_is_the_worst_status(tmp_path: Path, secured: RedisServer) -> None:
    config = server_config(tmp_path, secured, RELAXED_LATENCY)
    env = {
        "REDIS_RUNBOOK_THRESHOLDS__CONNECTED_CLIENTS__WARNING": "0",
        "REDIS_RUNBOOK_THRESHOLDS__CONNECTED_CLIENTS__CRITICAL": "1000",
    }
    warning = run_cli("--config", str(config), "health", "--json", env=env)
    assert warning.returncode == 1
    statuses = {c["name"]: c["status"] for c in json.loads(warning.stdout)["checks"]}
    assert statuses["connected_clients"] == "WARNING"

    env["REDIS_RUNBOOK_THRESHOLDS__CONNECTED_CLIENTS__CRITICAL"] = "0"
    critical = run_cli("--config", str(config), "health", "--json", env=env)
    assert critical.returncode == 2


def test_wrong_password_is_unknown_and_never_printed(tmp_path: Path, secured: RedisServer) -> None:
    wrong = tmp_path / "wrong.pw"
    wrong.write_text("not-the-password-42\n")
    config = write_config(
        tmp_path / "wrong.toml",
        {"target": {"url": secured.target().url, "password_file": str(wrong)}},
    )
    result = run_cli("--config", str(config), "health", "--json")  # returns: no hang
    assert result.returncode == 3
    check = json.loads(result.stdout)["checks"][0]
    assert check["name"] == "authentication"
    assert check["status"] == "UNKNOWN"
    assert "authentication failed" in check["summary"]
    assert "not-the-password-42" not in result.stdout + result.stderr


def test_down_server_is_critical(tmp_path: Path, secured: RedisServer) -> None:
    config = server_config(tmp_path, secured)
    secured.kill()
    result = run_cli("--config", str(config), "health")
    assert result.returncode == 2
    assert "CRITICAL" in result.stdout
    assert "connection" in result.stdout
    assert "Traceback" not in result.stderr


def test_password_never_on_a_command_line(secured: RedisServer) -> None:
    pid = secured.pid()
    assert pid is not None
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
    assert PASSWORD not in cmdline
    assert oct(secured.conf_path.stat().st_mode & 0o777) == "0o600"


def test_config_show_redacts_and_validate_reports(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[target]\nurl = "redis://app:sup3r-s3cret@db.internal:6380/1"\n')
    shown = run_cli("--config", str(config), "config", "show")
    assert shown.returncode == 0
    assert "sup3r-s3cret" not in shown.stdout
    assert "redis://app:***@db.internal:6380/1" in shown.stdout
    as_json = json.loads(run_cli("--config", str(config), "--json", "config", "show").stdout)
    assert as_json["config"]["target"]["url"] == "redis://app:***@db.internal:6380/1"
    valid = run_cli("--config", str(config), "config", "validate")
    assert valid.returncode == 0
    assert "configuration OK" in valid.stdout


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[thresholds.memory_pct]\nwarning = 95\n", "thresholds.memory_pct: warning (95)"),
        ('[target]\nurl = "mysql://x"\n', "target.url: expected a redis://"),
        ("[target\n", "invalid TOML"),
    ],
)
def test_bad_config_exits_2_with_hint_and_touches_nothing(
    tmp_path: Path, toml: str, message: str
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(toml)
    before = sorted(p.name for p in tmp_path.iterdir())
    for command in (["health"], ["config", "validate"], ["config", "show"]):
        result = run_cli("--config", str(config), *command)
        assert result.returncode == 2, (command, result.stderr)
        first, hint = result.stderr.strip().splitlines()[:2]
        assert first.startswith(f"error: {config}: ")
        assert message in first
        assert hint == "HINT: redis-runbook config validate"
        assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_missing_password_source_is_unknown_with_hint(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[target]\nurl = "redis://127.0.0.1:1/0"\npassword_env = "RR_TEST_PW"\n')
    result = run_cli("--config", str(config), "health", "--json")
    assert result.returncode == 3
    check = json.loads(result.stdout)["checks"][0]
    assert "RR_TEST_PW is not set" in check["summary"]
    assert check["hint"].startswith("export RR_TEST_PW=")


def test_watch_emits_json_lines_until_interrupted(tmp_path: Path, secured: RedisServer) -> None:
    config = server_config(tmp_path, secured, RELAXED_LATENCY)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_RUNBOOK_")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "redis_runbook",
            "--config",
            str(config),
            "health",
            "--json",
            "--watch",
            "0.5",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    first = json.loads(process.stdout.readline())
    second = json.loads(process.stdout.readline())  # a second report means it refreshed
    process.send_signal(signal.SIGINT)
    _stdout, stderr = process.communicate(timeout=10)
    assert first["status"] == second["status"] == "OK"
    assert second["time"] >= first["time"]
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr


def test_documented_acl_user_gets_every_check(tmp_path: Path, redis_factory: RedisFactory) -> None:
    acl = (
        "runbook on >acl-pw-1 ~* +ping +info +config|get +slowlog|len +latency|latest "
        "+client|list +client|setname +client|no-evict"  # docs/configuration.md
    )
    password_file = tmp_path / "pw"
    password_file.write_text("acl-pw-1\n")
    server = redis_factory(
        settings={"user": acl},
        target_overrides={"username": "runbook", "password_file": str(password_file)},
    )
    target = {
        "url": server.target().url,
        "username": "runbook",
        "password_file": str(password_file),
    }
    path = write_config(tmp_path / "c.toml", merged({"target": target}, RELAXED_LATENCY))
    result = run_cli("--config", str(path), "health", "--json")
    document = json.loads(result.stdout)
    assert [c["name"] for c in document["checks"] if c["status"] == "UNKNOWN"] == []
    assert result.returncode == 0


def test_the_command_word_is_found_after_global_options() -> None:
    from redis_runbook.cli.commands import requested_command

    assert requested_command(["--config", "x.toml", "--json", "health"]) == "health"
    assert requested_command(["-c", "queues", "lab", "up"]) == "lab"  # -c takes a value
    assert requested_command(["--yes", "--dry-run"]) is None


def test_help_lists_every_command_group() -> None:
    from redis_runbook.cli.commands import COMMANDS

    result = run_cli("--help")
    assert result.returncode == 0
    for name in COMMANDS:
        assert f"  {name} " in result.stdout, name
    subcommands = run_cli("queues", "--help").stdout
    assert "reconstruct" in subcommands
    assert "recover-stale" in subcommands


# --- issue 11 item 24: messages an operator reads at 3 a.m. ---------------------------------


def test_hints_keep_their_square_brackets(tmp_path: Path, secured: RedisServer) -> None:
    config = server_config(tmp_path, secured)
    secured.kill()
    result = run_cli("--config", str(config), "health")
    assert result.returncode == 2
    text = " ".join(result.stdout.split())
    assert "[target] url in: redis-runbook config show" in text, result.stdout


def test_byte_thresholds_read_as_sizes(tmp_path: Path) -> None:
    topology = start_topology(tmp_path / "topology", replicas=1, sentinels=1)
    try:
        sentinel = topology.sentinel_config()
        target = {
            "url": topology.target().url,
            "sentinel": {"service": sentinel.service, "addresses": sentinel.addresses},
        }
        config = write_config(tmp_path / "c.toml", merged({"target": target}, RELAXED_LATENCY))
        document = json.loads(run_cli("--config", str(config), "--json", "health").stdout)
        (lag,) = [c for c in document["checks"] if c["name"] == "replica_lag"]
        assert lag["threshold"].endswith("; warn > 1 MiB, crit > 64 MiB"), lag
        human = run_cli("--config", str(config), "health")
        assert "crit > 64 MiB" in human.stdout
        assert "e+0" not in human.stdout
    finally:
        topology.stop()


def test_every_config_problem_is_listed_once(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[thresholds.memory_pct]\nwarning = 95\n[target]\nconnect_timeout = -1\n")
    result = run_cli("--config", str(config), "config", "validate")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2, result.stderr
    assert "more)" not in result.stderr
    assert any("memory_pct" in line for line in errors)
    assert any("connect_timeout" in line for line in errors)
    assert result.stderr.splitlines()[-1] == "HINT: redis-runbook config validate"


def test_a_failing_password_command_hint_shows_the_failure(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[target]\nurl = "redis://127.0.0.1:1/0"\n'
        'password_command = ["sh", "-c", "echo vault is sealed >&2; exit 7"]\n'
    )
    for command in (["health"], ["keys", "stats"], ["clients", "list"]):
        result = run_cli("--config", str(config), *command)
        output = " ".join((result.stdout + result.stderr).split())
        assert "exited with status 7" in output, (command, output)
        assert "HINT: redis-runbook config validate" not in output, command
        assert "sh -c 'echo vault is sealed >&2; exit 7' >/dev/null" in output, (command, output)
    validate = run_cli("--config", str(config), "config", "validate")
    assert validate.returncode == 0  # the file itself is valid; the hint must not send here


def test_failover_names_the_replicas_not_none(tmp_path: Path, redis_factory: RedisFactory) -> None:
    lone = redis_factory()
    config = server_config(tmp_path, lone)
    result = run_cli("--config", str(config), "--dry-run", "failover")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "None" not in result.stderr
    assert "no replica is connected" in result.stderr
    replica = redis_factory(settings={"replicaof": f"127.0.0.1 {lone.port}"})
    wait_until(lambda: info(plain_client(lone), "replication")["connected_slaves"] == 1, "link")
    result = run_cli("--config", str(config), "--dry-run", "failover")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "None" not in result.stderr
    assert f"HINT: redis-runbook failover --to 127.0.0.1:{replica.port}" in result.stderr


def test_an_acl_limited_user_gets_each_hint_once(
    tmp_path: Path, redis_factory: RedisFactory
) -> None:
    password_file = tmp_path / "pw"
    password_file.write_text("acl-pw-2\n")
    server = redis_factory(settings={"user": "limited on >acl-pw-2 ~* +ping +client|setname"})
    target = {
        "url": server.target().url,
        "username": "limited",
        "password_file": str(password_file),
    }
    path = write_config(tmp_path / "c.toml", merged({"target": target}, RELAXED_LATENCY))
    result = run_cli("--config", str(path), "health")
    hints = [line for line in result.stdout.splitlines() if line.startswith("HINT")]
    texts = [line.split("): ", 1)[1] for line in hints]
    assert hints, result.stdout
    assert len(texts) == len(set(texts)), result.stdout


def test_brackets_in_redis_data_are_printed_as_they_are(
    tmp_path: Path, redis_factory: RedisFactory
) -> None:
    server = redis_factory(settings={"slowlog-log-slower-than": "0"})
    named_client = plain_client(server, client_name="worker[1]")
    named_client.ping()
    named_client.set("tmp:a1", "[bold]x[/bold]")
    config = server_config(
        tmp_path,
        server,
        {
            "categories": [
                {"name": "tmp", "pattern": "tmp:[ab]*", "priority": "low", "rebuildable": True}
            ]
        },
    )
    perf = run_cli("--config", str(config), "perf", "report")
    assert perf.returncode == 0, perf.stderr
    assert "[bold]x[/bold]" in perf.stdout
    clients = run_cli("--config", str(config), "clients", "list")
    assert clients.returncode == 0, clients.stderr
    assert "worker[1]" in clients.stdout
    keys = run_cli("--config", str(config), "keys", "stats")
    assert keys.returncode == 0, keys.stderr
    assert "tmp:[ab]*" in keys.stdout
