"""Error replies from a live server, each mapped by redis-py's exception class to a
typed error with a hint of its own: LOADING, READONLY, OOM, NOPERM, and a db the
server does not have. Real servers, real replies."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import pytest
import redis

from redis_runbook.checks import run_health
from redis_runbook.config import Config, TargetConfig
from redis_runbook.errors import (
    EXIT_USAGE,
    AuthFailed,
    ConfigError,
    ReadOnlyReplica,
    RunbookError,
    ServerLoading,
    ServerOutOfMemory,
)
from redis_runbook.lab.server import RedisServer
from redis_runbook.status import Status
from redis_runbook.target import classify, connect, make_client
from tests.support.cli import run_cli
from tests.support.config import write_config
from tests.support.servers import RedisFactory, plain_client
from tests.support.waiting import wait_until


def classified(target: TargetConfig, *command: str) -> RunbookError:
    """Run `command` with the tool's own client; the RunbookError classify makes of
    the error reply (the test fails when there is none)."""
    client = make_client(target)
    try:
        connect(client, "t")
        client.execute_command(*command)
    except redis.RedisError as exc:
        return classify(exc, "t")
    finally:
        client.close()
    pytest.fail(f"{command} did not fail")


def test_readonly_replica(redis_factory: RedisFactory) -> None:
    master = redis_factory()
    replica = redis_factory()
    with plain_client(replica) as admin:
        admin.execute_command("REPLICAOF", "127.0.0.1", str(master.port))
    error = classified(replica.target(), "SET", "k", "v")
    assert isinstance(error, ReadOnlyReplica), error
    assert "read-only replica" in error.message
    assert "redis-runbook failover" in error.hint
    assert "[target]" in error.hint


def test_out_of_memory(redis_server: RedisServer) -> None:
    with plain_client(redis_server) as admin:
        admin.config_set("maxmemory", "1")
    error = classified(redis_server.target(), "SET", "k", "v")
    assert isinstance(error, ServerOutOfMemory), error
    assert "redis-runbook recover oom" in error.hint


def test_no_permission_names_the_command_and_acl_getuser(
    redis_factory: RedisFactory, tmp_path: Path
) -> None:
    server = redis_factory({"user": "reader on >readpw ~* +@read +ping +client +select"})
    secret = tmp_path / "reader.pw"
    secret.write_text("readpw\n")
    target = server.target().model_copy(update={"username": "reader", "password_file": secret})
    error = classified(target, "SET", "k", "v")
    assert isinstance(error, AuthFailed), error
    assert "permission denied" in error.message
    assert "+set" in error.hint
    assert "ACL GETUSER reader" in error.hint
    assert f"-p {server.port} --user reader --askpass" in error.hint
    assert "readpw" not in error.message + error.hint


def test_loading(redis_factory: RedisFactory) -> None:
    # Each key takes 10 ms to load and the server answers between keys: a DEBUG RELOAD
    # keeps it LOADING for tens of seconds, long enough to be caught at it.
    server = redis_factory(
        {
            "enable-debug-command": "local",
            "key-load-delay": "10000",
            "loading-process-events-interval-bytes": "1024",
        }
    )
    with plain_client(server) as admin:
        pipe = admin.pipeline(transaction=False)
        for index in range(4000):
            pipe.set(f"k{index}", "x" * 64)
        pipe.execute()
    reloader = plain_client(server, socket_timeout=None)

    def reload() -> None:
        with contextlib.suppress(redis.RedisError):
            reloader.execute_command("DEBUG", "RELOAD")

    threading.Thread(target=reload, daemon=True).start()

    def loading() -> bool:
        with plain_client(server) as probe:
            try:
                probe.ping()
            except redis.BusyLoadingError:
                return True
        return False

    wait_until(loading, "the server to be LOADING")
    error = classified(server.target(), "SET", "k", "v")
    assert isinstance(error, ServerLoading), error
    assert "loading" in error.message
    assert "redis-runbook health" in error.hint
    server.kill()


# --- a db the server does not have -----------------------------------------------------------


def test_db_out_of_the_servers_range(redis_factory: RedisFactory, tmp_path: Path) -> None:
    server = redis_factory({"databases": "4"})
    target = TargetConfig(url=f"redis://127.0.0.1:{server.port}/9")
    client = make_client(target)
    with pytest.raises(ConfigError) as caught:
        connect(client, "t")
    client.close()
    assert "db 9" in caught.value.message
    assert "out of range" in caught.value.message
    assert f"redis-cli -h 127.0.0.1 -p {server.port} CONFIG GET databases" in caught.value.hint
    report = run_health(Config(target=target))
    assert [(c.name, c.status) for c in report.checks] == [("connection", Status.CRITICAL)]
    assert "CONFIG GET databases" in (report.checks[0].hint or "")
    config = write_config(tmp_path / "db.toml", {"target": {"url": target.url}})
    result = run_cli("--config", str(config), "keys", "stats")
    assert result.returncode == EXIT_USAGE, result.stderr
    assert "db 9" in result.stderr
    assert "CONFIG GET databases" in result.stderr
    assert "Traceback" not in result.stderr
