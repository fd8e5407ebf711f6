"""Connections: identity and no-evict on every connection, unix sockets, secret
sources that fail without leaking what they printed."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from redis_runbook.checks import run_health
from redis_runbook.config import Config, TargetConfig, secrets
from redis_runbook.errors import SecretError
from redis_runbook.lab.server import RedisServer
from redis_runbook.target import connect, make_client
from tests.support.servers import RedisFactory


@pytest.fixture
def server(tmp_path: Path, redis_factory: RedisFactory) -> RedisServer:
    """A server that also listens on a unix socket."""
    socket_path = tmp_path / "redis.sock"
    return redis_factory(settings={"unixsocket": str(socket_path), "unixsocketperm": "700"})


def test_connections_are_named_and_not_evictable(server: RedisServer) -> None:
    client = make_client(server.target())
    connect(client, "test")
    client.execute_command("PING")
    observer = redis.Redis(port=int(server.port or 0), decode_responses=True)
    try:
        ours = [c for c in observer.client_list() if c.get("name") == "redis-runbook"]
        assert len(ours) == 1
        assert "e" in ours[0]["flags"]  # CLIENT NO-EVICT on
    finally:
        observer.close()
        client.close()


def test_health_over_a_unix_socket(server: RedisServer, tmp_path: Path) -> None:
    target = TargetConfig(url=f"unix://{tmp_path / 'redis.sock'}?db=0")
    report = run_health(Config(target=target))
    assert report.snapshot.reachable, report.checks
    assert report.snapshot.info["redis_version"]
    assert {c.name for c in report.checks} >= {"memory", "aof", "keyspace"}


def test_select_db_from_the_url(server: RedisServer) -> None:
    direct = redis.Redis(port=int(server.port or 0), db=3)
    direct.set("only-in-db3", "1")
    direct.close()
    client = make_client(TargetConfig(url=f"redis://127.0.0.1:{server.port}/3"))
    try:
        assert client.execute_command("EXISTS", "only-in-db3") == 1
    finally:
        client.close()


def test_failing_password_command_does_not_echo_its_output() -> None:
    # The hint names the command to run by hand (not a secret); what it printed, the
    # joined marker, must not appear.
    argv = ["sh", "-c", "echo $0$1-out; echo $0$1-err >&2; exit 3", "leaked", "-secret"]
    with pytest.raises(SecretError) as caught:
        secrets.from_command(argv, "target.password_command")
    assert "exited with status 3" in caught.value.message
    assert "leaked-secret" not in caught.value.message + caught.value.hint


def test_secret_sources(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("from-file\nsecond line ignored\n")
    assert secrets.from_file(path, "k") == "from-file"
    assert secrets.from_command(["echo", "from-command"], "k") == "from-command"
    assert secrets.from_env("PW_VAR", "k", {"PW_VAR": "from-env"}) == "from-env"
    with pytest.raises(SecretError, match="cannot read"):
        secrets.from_file(tmp_path / "absent", "k")
    (tmp_path / "empty").write_text("")
    with pytest.raises(SecretError, match="is empty"):
        secrets.from_file(tmp_path / "empty", "k")
    with pytest.raises(SecretError, match="command not found"):
        secrets.from_command(["/nonexistent/vault"], "k")


def test_redaction_of_any_url_in_any_text(tmp_path: Path) -> None:
    from redis_runbook.journal import Journal, redact
    from redis_runbook.redaction import redact_url

    text = (
        "got 'http://u:CANARY1@127.0.0.1:1/0' and rediss://:CANARY2@h/0, "
        "postgresql://runbook:CANARY3@db:5432/x; redis://u:CANARY@4@h:6379/0 "
        "and redis://h:6379/0 and unix:///run/redis.sock?db=1"
    )
    shown = redact(text)
    assert "CANARY" not in shown
    assert "http://u:***@127.0.0.1:1/0" in shown
    assert "redis://h:6379/0 and unix:///run/redis.sock?db=1" in shown
    assert redact_url("redis://u:CANARY/5@h:1/0") == "redis://u:***@h:1/0"
    assert redact_url("redis://u@h:1/0") == "redis://u@h:1/0"  # a user name is no secret
    journal = Journal.in_dir(tmp_path)
    journal.record(target="ftp://u:CANARY6@h", procedure="p", step="s", outcome="ok", message=text)
    assert "CANARY" not in journal.path.read_text()
