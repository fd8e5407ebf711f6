"""Hints that name `redis-cli` name it with the target's own options (-h/-p or -s,
-n, --user, --askpass, --tls and its files): a bare `redis-cli` goes to port 6379,
which is some other server or none. Never the password."""

from __future__ import annotations

import re
from pathlib import Path

from redis_runbook.checks import run_health
from redis_runbook.config import Band, Config, ServerExpectations, TargetConfig, Thresholds
from redis_runbook.target import redis_cli_prefix
from tests.support.cli import run_cli
from tests.support.config import write_config
from tests.support.servers import RedisFactory

PASSWORD = "hint-pw-never-shown"


def test_prefix_for_each_kind_of_target(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    ca = tmp_path / "ca.pem"
    ca.write_text("not read here\n")
    cases = {
        "redis://10.0.0.5:6380/2": "redis-cli -h 10.0.0.5 -p 6380 -n 2",
        f"redis://:{PASSWORD}@10.0.0.5/0": "redis-cli -h 10.0.0.5 -p 6379 --askpass",
        f"redis://ops:{PASSWORD}@[::1]:7000": "redis-cli -h ::1 -p 7000 --user ops --askpass",
        "unix:///run/redis dir/redis.sock?db=1": "redis-cli -s '/run/redis dir/redis.sock' -n 1",
    }
    for url, expected in cases.items():
        assert redis_cli_prefix(TargetConfig(url=url)) == expected
    acl = TargetConfig(url="redis://h:1/0", username="runbook", password_file=secret)
    assert redis_cli_prefix(acl) == "redis-cli -h h -p 1 --user runbook --askpass"
    assert redis_cli_prefix(acl, ("10.9.9.9", 6390)).startswith("redis-cli -h 10.9.9.9 -p 6390")
    tls = TargetConfig(url="rediss://h:6380/0", tls_ca=ca, tls_verify=False)
    assert redis_cli_prefix(tls) == f"redis-cli -h h -p 6380 --tls --cacert {ca} --insecure"
    assert PASSWORD not in "".join(redis_cli_prefix(TargetConfig(url=u)) for u in cases)


def test_health_and_cli_hints_aim_redis_cli_at_the_target(
    redis_factory: RedisFactory, tmp_path: Path
) -> None:
    secret = tmp_path / "runbook.pw"
    secret.write_text(PASSWORD + "\n")
    server = redis_factory(
        {
            "user": f"runbook on >{PASSWORD} ~* &* +@all",
            "appendonly": "no",
            "maxmemory-policy": "allkeys-lru",
        },
        {"username": "runbook", "password_file": secret},
    )
    prefix = f"redis-cli -h 127.0.0.1 -p {server.port} --user runbook --askpass"
    low = Band(warning=0, critical=0)
    config = Config(
        target=server.target(),
        server=ServerExpectations(maxmemory="8gb"),  # the lab runs 64mb: drift
        thresholds=Thresholds(latency_ms=low, connected_clients=low),
    )
    hints = [c.hint for c in run_health(config).checks if c.hint and "redis-cli" in c.hint]
    assert len(hints) >= 4, hints
    for hint in hints:
        uses = re.findall(r"redis-cli.{0,80}", hint)
        assert all(use.startswith(prefix) for use in uses), hint
        assert PASSWORD not in hint
    toml = write_config(
        tmp_path / "hints.toml",
        {
            "target": {
                "url": server.target().url,
                "username": "runbook",
                "password_file": str(secret),
            },
            "thresholds": {"latency_ms": {"warning": 0, "critical": 0}},
        },
    )
    result = run_cli("--config", str(toml), "health")
    shown = [line for line in result.stdout.splitlines() if "redis-cli" in line]
    assert shown, result.stdout
    assert all(prefix in line for line in shown), shown
    assert PASSWORD not in result.stdout + result.stderr


def test_a_held_lock_hints_redis_cli_on_the_targets_db(redis_factory: RedisFactory) -> None:
    import json

    import pytest

    from redis_runbook.errors import Refused
    from redis_runbook.locks import REDIS_LOCK_KEY, holder_info, redis_lock
    from redis_runbook.target import make_client

    server = redis_factory()
    target = TargetConfig(url=f"redis://127.0.0.1:{server.port}/3")
    client = make_client(target)
    try:
        client.set(REDIS_LOCK_KEY, json.dumps(holder_info("recover restart")), ex=600)
        with pytest.raises(Refused) as caught, redis_lock(client, "keys purge", 60):
            pass
    finally:
        client.close()
    assert f"redis-cli -h 127.0.0.1 -p {server.port} -n 3 DEL {REDIS_LOCK_KEY}" in (
        caught.value.hint
    )


def test_a_sentinel_targets_hints_name_the_master_it_found(
    redis_factory: RedisFactory, tmp_path: Path
) -> None:
    """[target] url's host is ignored for a Sentinel target: hints name the master
    that Sentinel gave, not the URL's address."""
    import subprocess

    import redis

    from redis_runbook.config import SentinelConfig
    from redis_runbook.ports import free_port
    from tests.support.waiting import wait_until

    master = redis_factory()
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor hintmaster 127.0.0.1 {master.port} 1\n"
    )
    log = (tmp_path / "sentinel.log").open("wb")
    sentinel = subprocess.Popen(["redis-sentinel", str(conf)], stdout=log, stderr=log)
    try:
        probe = redis.Redis(port=port, socket_timeout=2, decode_responses=True)

        def answers() -> bool:
            try:
                return bool(
                    probe.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "x") is None
                )
            except redis.RedisError:
                return False

        wait_until(answers, "redis-sentinel to answer")
        probe.close()
        target = TargetConfig(
            url="redis://127.0.0.1:1/0",
            sentinel=SentinelConfig(service="hintmaster", addresses=[f"127.0.0.1:{port}"]),
        )
        low = Band(warning=0, critical=0)
        report = run_health(Config(target=target, thresholds=Thresholds(latency_ms=low)))
    finally:
        sentinel.kill()
        sentinel.wait()
        log.close()
    hints = [c.hint for c in report.checks if c.hint and "redis-cli" in c.hint]
    assert hints, [c.summary for c in report.checks]
    assert all(f"redis-cli -h 127.0.0.1 -p {master.port} " in hint for hint in hints), hints
