"""Targets that cannot be used: down, wrong credentials, ACL users without rights,
TLS mismatches, a port that accepts TCP but never answers. Health never raises and
never waits without a deadline (a timeout is reported as such), on real servers."""

from __future__ import annotations

import json
import signal
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from redis_runbook.checks import CHECK_NAMES, HealthReport, run_health
from redis_runbook.config import Band, Config, TargetConfig, Thresholds
from redis_runbook.diagnose.engine import diagnose
from redis_runbook.lab.server import PRODUCTION_LIKE, RedisServer
from redis_runbook.status import Status
from redis_runbook.units import format_bytes, parse_size
from tests.support.pki import make_ca, make_leaf
from tests.support.servers import RedisFactory, config_for, named, process_config

PASSWORD = "s3cret-test-pw"
WRONG_PASSWORD = "not-the-s3cret-pw"
# One PING on a busy machine can exceed 1 ms; latency is not what these tests are about.
RELAXED = Thresholds(latency_ms=Band(warning=1000, critical=2000))


def health_within(config: Config, env: dict[str, str] | None = None) -> HealthReport:
    """Run health: it must return a report, not raise (nor hang: a wait without a
    deadline would stall the test run). How long it took is not asserted — a loaded
    machine is slow, not wrong; what the report says about the timeout is."""
    return run_health(config, env=env)


def retarget(server: RedisServer, **fields: Any) -> TargetConfig:
    """The server's target with some fields replaced (validated again)."""
    values = server.target().model_dump()
    values.update(fields)
    return TargetConfig.model_validate(values)


def assert_unreachable(report: HealthReport) -> str:
    """A single CRITICAL 'connection' check; returns its summary."""
    assert [(c.name, c.status) for c in report.checks] == [("connection", Status.CRITICAL)]
    assert report.status is Status.CRITICAL
    assert report.to_json()["exit_code"] == 2
    return report.checks[0].summary


# --- down, never answering ----------------------------------------------------------------


def test_server_down_is_critical(redis_server: RedisServer) -> None:
    config = config_for(redis_server)
    redis_server.kill()
    report = health_within(config)
    summary = assert_unreachable(report)
    assert f"127.0.0.1:{redis_server.port}" in summary


def test_port_that_never_answers_is_critical() -> None:
    # The kernel completes the TCP handshake for a listening socket nobody accepts on:
    # only the read of the Redis handshake reply can time out.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        target = TargetConfig(
            url=f"redis://127.0.0.1:{port}/0", connect_timeout=1, command_timeout=1
        )
        report = health_within(Config(target=target))
    summary = assert_unreachable(report)
    assert "no answer in time" in summary


# --- passwords ----------------------------------------------------------------------------


@pytest.fixture
def secured(redis_factory: RedisFactory, tmp_path: Path) -> RedisServer:
    """A requirepass server; the lab itself reaches it with the right password file."""
    right = tmp_path / "right.pw"
    right.write_text(PASSWORD + "\n")
    return redis_factory({"requirepass": PASSWORD}, {"password_file": right})


def test_wrong_password_is_unknown_and_never_shown(secured: RedisServer, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.pw"
    wrong.write_text(WRONG_PASSWORD + "\n")
    config = Config(target=retarget(secured, password_file=wrong))
    report = health_within(config)
    assert [(c.name, c.status) for c in report.checks] == [("authentication", Status.UNKNOWN)]
    assert report.status is Status.UNKNOWN
    assert report.to_json()["exit_code"] == 3
    assert "authentication failed" in report.checks[0].summary
    shown = json.dumps(report.to_json()) + repr(report)
    assert WRONG_PASSWORD not in shown
    assert PASSWORD not in shown


def test_missing_password_is_unknown(secured: RedisServer) -> None:
    config = Config(target=retarget(secured, password_file=None))
    report = health_within(config)
    assert [(c.name, c.status) for c in report.checks] == [("authentication", Status.UNKNOWN)]


@pytest.mark.parametrize("source", ["password_file", "password_env", "password_command"])
def test_right_password_from_each_source(secured: RedisServer, tmp_path: Path, source: str) -> None:
    right = tmp_path / "right.pw"
    sources: dict[str, dict[str, Any]] = {
        "password_file": {"password_file": right},
        "password_env": {"password_file": None, "password_env": "MY_PW"},
        "password_command": {"password_file": None, "password_command": ["cat", str(right)]},
    }
    fields = sources[source]
    config = Config(target=retarget(secured, **fields), thresholds=RELAXED)
    report = health_within(config, env={"MY_PW": PASSWORD})
    assert [c.name for c in report.checks] == list(CHECK_NAMES)
    assert [c.name for c in report.checks if c.status is Status.UNKNOWN] == []
    assert report.status is not Status.UNKNOWN
    assert PASSWORD not in json.dumps(report.to_json()) + repr(report)


# --- ACL users ----------------------------------------------------------------------------

ACL_USERS = "\n".join(
    [
        # Enough to connect and PING, nothing to read state with.
        "monitor on >monpw ~* +ping +client|setname +client|no-evict",
        # Everything but CONFIG (as on managed Redis that renames or hides it).
        "noconfig on >ncpw ~* &* +@all -config",
    ]
)


def acl_config(server: RedisServer, tmp_path: Path, user: str, password: str) -> Config:
    secret = tmp_path / f"{user}.pw"
    secret.write_text(password + "\n")
    return Config(target=retarget(server, username=user, password_file=secret), thresholds=RELAXED)


def test_acl_user_without_info(redis_factory: RedisFactory, tmp_path: Path) -> None:
    server = redis_factory({"user": ACL_USERS})
    config = acl_config(server, tmp_path, "monitor", "monpw")
    report = health_within(config)
    statuses = {c.name: c.status for c in report.checks}
    assert list(statuses) == list(CHECK_NAMES)
    assert statuses.pop("ping_latency") is Status.OK
    assert set(statuses.values()) == {Status.UNKNOWN}
    assert report.status is Status.UNKNOWN
    memory = named(report, "memory")
    assert "no permissions to run the 'info' command" in memory.summary
    assert memory.hint is not None


def test_acl_user_without_config(redis_factory: RedisFactory, tmp_path: Path) -> None:
    server = redis_factory({"user": ACL_USERS})
    config = acl_config(server, tmp_path, "noconfig", "ncpw")
    report = health_within(config)
    denied = report.snapshot.denied
    assert denied
    assert all(command.startswith("CONFIG GET") for command in denied)
    assert [c.name for c in report.checks if c.status is Status.UNKNOWN] == []
    memory = named(report, "memory")
    assert memory.status is Status.OK
    lab_maxmemory = format_bytes(parse_size(PRODUCTION_LIKE["maxmemory"]))
    assert memory.summary.endswith(f"of {lab_maxmemory} maxmemory")  # read from INFO
    assert named(report, "maxmemory_policy").value == "noeviction"


# --- TLS ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """A throwaway CA with a server and a client certificate, and a second CA."""

    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = make_ca(directory, "test-ca")
    other_ca, _ = make_ca(directory, "other-ca")
    server = make_leaf(directory, "server", ca, "subjectAltName=IP:127.0.0.1,DNS:localhost")
    client = make_leaf(directory, "client", ca, None)
    return Pki(ca[0], other_ca, server[0], server[1], client[0], client[1])


@pytest.fixture
def tls_server(redis_factory: RedisFactory, pki: Pki) -> RedisServer:
    """A TLS-only server that requires client certificates."""
    return redis_factory(
        {
            "tls-port": "0",  # replaced by the lab with the server's port
            "tls-cert-file": str(pki.server_cert),
            "tls-key-file": str(pki.server_key),
            "tls-ca-cert-file": str(pki.ca),
            "tls-auth-clients": "yes",
        },
        {"tls_ca": pki.ca, "tls_cert": pki.client_cert, "tls_key": pki.client_key},
    )


def test_tls_health_is_ok(tls_server: RedisServer) -> None:
    config = Config(target=tls_server.target(), thresholds=RELAXED)
    assert config.target.url.startswith("rediss://")
    report = health_within(config)
    assert [c.name for c in report.checks if c.status is not Status.OK] == []
    assert report.status is Status.OK


def test_plain_client_against_tls_port(tls_server: RedisServer) -> None:
    target = TargetConfig(url=f"redis://127.0.0.1:{tls_server.port}/0", connect_timeout=2)
    report = health_within(Config(target=target))
    summary = assert_unreachable(report)
    assert f"127.0.0.1:{tls_server.port} expects TLS" in summary
    hint = report.checks[0].hint or ""
    assert "rediss://" in hint
    assert "tls_ca" in hint
    assert "is redis-server running" not in hint


def test_tls_with_a_ca_that_did_not_sign_the_server(tls_server: RedisServer, pki: Pki) -> None:
    config = Config(target=retarget(tls_server, tls_ca=pki.other_ca))
    report = health_within(config)
    summary = assert_unreachable(report)
    assert "TLS" in summary
    assert "certificate verify failed" in summary


def test_tls_without_client_certificate(tls_server: RedisServer) -> None:
    config = Config(target=retarget(tls_server, tls_cert=None, tls_key=None))
    report = health_within(config)
    assert "TLS" in assert_unreachable(report)


def test_tls_client_against_plain_server(redis_server: RedisServer, pki: Pki) -> None:
    target = TargetConfig(
        url=f"rediss://127.0.0.1:{redis_server.port}/0", connect_timeout=2, tls_ca=pki.ca
    )
    report = health_within(Config(target=target))
    summary = assert_unreachable(report)
    assert f"127.0.0.1:{redis_server.port} speaks plain Redis, not TLS" in summary
    hint = report.checks[0].hint or ""
    assert "redis://" in hint
    assert "is redis-server running" not in hint


@pytest.mark.parametrize("with_service", [True, False], ids=["service", "no-service"])
def test_diagnose_names_a_tls_mismatch(
    redis_server: RedisServer, pki: Pki, with_service: bool
) -> None:
    """Not C "paused" (the TLS handshake waits on a plain port that waits for a
    newline) nor A "config-error": the server is fine, [target] is wrong."""
    config = process_config(redis_server, connect_timeout=1) if with_service else Config()
    target = config.target.model_copy(
        update={"url": f"rediss://127.0.0.1:{redis_server.port}/0", "tls_ca": pki.ca}
    )
    diagnosis = diagnose(config.model_copy(update={"target": target}), tool_timeout=0)
    assert diagnosis.scenarios == [], diagnosis.scenarios
    assert diagnosis.exit_code == 3
    assert diagnosis.unknown is not None
    assert "speaks plain Redis, not TLS" in diagnosis.unknown


def test_a_stopped_tls_server_is_not_called_plain(tls_server: RedisServer) -> None:
    """A TLS handshake that times out because the server is stopped (SIGSTOP) is no
    answer in time, not a protocol mismatch: the plain probe gets no reply either."""
    config = Config(target=retarget(tls_server, connect_timeout=1, command_timeout=1))
    tls_server.kill(signal.SIGSTOP)
    try:
        report = health_within(config)
    finally:
        tls_server.kill(signal.SIGCONT)
    summary = assert_unreachable(report)
    assert "no answer in time" in summary
    assert "plain" not in summary
