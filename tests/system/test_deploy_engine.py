"""deploy/docker-compose.yml brought up for real on the private Docker engine, as an
operator does it: `docker compose up -d` in a copy of deploy/, with an override file
(`docker-compose.override.yml`, which compose reads by itself) in place of what this
machine cannot have:

- the registry images: the session's Redis image instead of `redis:8.4`, and the
  tool's image `redis-runbook:local` assembled without a network inside any
  container (deploy/Dockerfile's steps: python3, borgbackup and openssh-client from
  the Debian tree, the locked dependencies, the package, user 10001, the state dir
  as home);
- published ports and a host directory at /data: host networking on 127.0.0.1 and
  free ports (nothing else may be touched here, port 6379 least of all).

Everything else is the file as shipped: the read-only root, dropped capabilities,
secrets as files under /run/secrets, the named state volumes, the health checks."""

from __future__ import annotations

import contextlib
import os
import shutil
import sysconfig
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from redis_runbook.ports import free_port
from tests.support.config import write_config
from tests.support.docker_engine import DockerEngine, EngineError
from tests.support.paths import ROOT
from tests.support.peers import WebhookPeer, running, start_webhook
from tests.support.waiting import wait_until

TOOL_IMAGE = "redis-runbook:local"  # the name deploy/docker-compose.yml gives it
TOOL_UID = 10001
SECRETS = ("smtp_password", "slack_webhook_url", "borg_passphrase", "borg_ssh_key")
#: deploy/Dockerfile's user and state directory, made in the Debian tree.
TOOL_SETUP = (
    f"groupadd --system --gid {TOOL_UID} redis-runbook"
    f" && useradd --system --uid {TOOL_UID} --gid {TOOL_UID} --home-dir /var/lib/redis-runbook"
    " --create-home --shell /usr/sbin/nologin redis-runbook"
    " && chmod 0750 /var/lib/redis-runbook && mkdir -p /opt/redis-runbook"
    " && ln -s /usr/bin/python3 /usr/local/bin/python"
)


def build_tool_image(engine: DockerEngine) -> None:
    """`redis-runbook:local` from the Debian tree (python3 3.11, borgbackup, ssh): the
    test venv's installed dependencies (the locked set, cp311 wheels) and the package
    copied in, `python3 -m redis_runbook` as the entrypoint."""
    name = f"rrtest-tool-{os.getpid()}"
    engine.docker("create", "--name", name, "--network", "none", "--user", "0:0",
                  engine.base_image, "sh", "-c", TOOL_SETUP)  # fmt: skip
    try:
        engine.docker("start", "--attach", name)
        site = sysconfig.get_paths()["purelib"]
        engine.docker("cp", f"{site}/.", f"{name}:/opt/redis-runbook/site/")
        engine.docker("cp", str(ROOT / "src"), f"{name}:/opt/redis-runbook/src")
        engine.docker(
            "commit",
            "-c", f"USER {TOOL_UID}:{TOOL_UID}",
            "-c", "WORKDIR /var/lib/redis-runbook",
            "-c", "ENV HOME=/var/lib/redis-runbook PYTHONDONTWRITEBYTECODE=1 "
                  "PYTHONPATH=/opt/redis-runbook/src:/opt/redis-runbook/site "
                  "REDIS_RUNBOOK_CONFIG=/etc/redis-runbook/redis-runbook.toml "
                  "REDIS_RUNBOOK_RUNBOOK__STATE_DIR=/var/lib/redis-runbook",
            "-c", 'VOLUME ["/var/lib/redis-runbook"]',
            "-c", 'ENTRYPOINT ["python3", "-m", "redis_runbook"]',
            "-c", 'CMD ["--help"]',
            name, TOOL_IMAGE,
        )  # fmt: skip
    finally:
        engine.docker("rm", "--force", name)


def override(engine: DockerEngine, data: Path, port: int, metrics_port: int) -> str:
    """The override file: local images, host networking on 127.0.0.1, free ports."""
    return f"""services:
  redis:
    image: {engine.image}
    network_mode: host
    ports: !reset []
    volumes: !override
      - {data}:/data
    command: !override [redis-server, --port, "{port}", --bind, 127.0.0.1,
                        --appendonly, "yes", --appendfsync, everysec,
                        --maxmemory, 16mb, --maxmemory-policy, noeviction]
    healthcheck:
      test: ["CMD-SHELL", "redis-cli -p {port} ping | grep -q PONG"]
  redis-runbook-exporter:
    build: !reset null
    network_mode: host
    ports: !reset []
    command: !override [exporter, --listen, "127.0.0.1:{metrics_port}"]
    healthcheck:
      test: [CMD, python, -c, "import urllib.request; urllib.request.urlopen(
             'http://127.0.0.1:{metrics_port}/metrics', timeout=10)"]
  redis-runbook-monitor:
    build: !reset null
    network_mode: host
"""


def tool_config(port: int, metrics_port: int) -> dict[str, Any]:
    """redis-runbook.toml: the example's shape on this machine (a webhook on
    loopback as the Slack sink, no SMTP, no borg repository to reach)."""
    # Room for a loaded CI machine: slow connects and replies, quick delivery retries.
    return {
        "target": {
            "url": f"redis://127.0.0.1:{port}/0",
            "connect_timeout": 10.0,
            "command_timeout": 30.0,
        },
        "service": {
            "kind": "compose",
            "compose_service": "redis",
            "container_data_dir": "/data",
            "owner": "999:999",
        },
        "monitor": {"interval_seconds": 2},
        "alerts": {
            "retry_base_seconds": 2.0,
            "webhooks": [
                {"name": "slack", "url_file": "/run/secrets/slack_webhook_url", "format": "json"}
            ],
        },
        "exporter": {"listen": f"127.0.0.1:{metrics_port}"},
    }


@pytest.fixture
def hook() -> Iterator[WebhookPeer]:
    yield from running(start_webhook())


def test_deploy_compose_file_runs_redis_exporter_and_monitor(
    tmp_path: Path, engine: DockerEngine, hook: WebhookPeer
) -> None:
    """`docker compose up -d` of deploy/ with the override: Redis answers, the
    exporter serves /metrics with `redis_up 1`, and the monitor, reading its webhook
    URL from a docker secret, posts a memory alert when Redis passes 85 % of
    maxmemory; every service runs as the user the file says, with its root read-only."""
    build_tool_image(engine)
    deploy = tmp_path / "deploy"
    shutil.copytree(ROOT / "deploy", deploy, ignore=shutil.ignore_patterns("secrets"))
    data = tmp_path / "redis-data"
    data.mkdir()
    os.chown(data, 999, 999)
    port, metrics_port = free_port(), free_port()
    (deploy / "docker-compose.override.yml").write_text(override(engine, data, port, metrics_port))
    write_config(deploy / "redis-runbook.toml", tool_config(port, metrics_port))
    (deploy / "borg_known_hosts").write_text("")
    (deploy / "secrets").mkdir()
    for secret in SECRETS:
        path = deploy / "secrets" / secret
        path.write_text(hook.url() + "\n" if secret == "slack_webhook_url" else "unused\n")
        os.chown(path, TOOL_UID, TOOL_UID)
        path.chmod(0o400)
    compose = ["compose", "--project-directory", str(deploy),
               "-f", str(deploy / "docker-compose.yml"),
               "-f", str(deploy / "docker-compose.override.yml")]  # fmt: skip
    engine.docker(*compose, "up", "-d")
    try:
        client = redis.Redis(port=port, socket_timeout=30)

        def serving() -> bool | None:
            with contextlib.suppress(redis.RedisError):
                return bool(client.ping()) or None
            return None

        wait_until(serving, f"the deploy file's Redis on port {port}", timeout=120)

        def scraped() -> str | None:
            url = f"http://127.0.0.1:{metrics_port}/metrics"
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=10) as reply:
                return str(reply.read().decode())
            return None

        metrics = wait_until(scraped, "the exporter's /metrics", timeout=120)
        assert "\nredis_up 1" in "\n" + metrics
        assert "redis_runbook_build_info" in metrics

        filled = 0  # past the 85 % critical threshold, below maxmemory (noeviction)
        while int(client.info("memory")["used_memory"]) < 0.9 * 16 * 2**20:
            client.set(f"fill:{filled}", os.urandom(2**17))
            filled += 1

        def alerted() -> list[dict[str, object]] | None:
            # A cycle may land mid-fill: WARNING FIRING first, then CRITICAL ESCALATED.
            memory = [p for p in hook.inbox.posts if p.get("key") == "redis:memory"]
            return [p for p in memory if p.get("status") == "CRITICAL"] or None

        try:
            posts = wait_until(alerted, "the monitor's memory alert on the webhook", timeout=300)
        except BaseException:
            logs = engine.docker(*compose, "logs", "--no-color", "--tail", "60",
                                 "redis-runbook-monitor").stdout  # fmt: skip
            state = engine.docker(*compose, "ps", "--all").stdout
            print(f"monitor logs:\n{logs}\ncompose ps:\n{state}\nposts: {hook.inbox.posts}")
            raise
        assert posts[0]["kind"] in ("FIRING", "ESCALATED")
        for service, user in (("redis-runbook-exporter", f"{TOOL_UID}"),
                              ("redis-runbook-monitor", f"{TOOL_UID}"),
                              ("redis", "999")):  # fmt: skip
            ids = engine.docker(*compose, "ps", "-q", service).stdout.split()
            assert len(ids) == 1, service
            uid = engine.docker("exec", ids[0], "id", "-u").stdout.strip()
            assert uid == user, service
        monitor = engine.docker(*compose, "ps", "-q", "redis-runbook-monitor").stdout.split()
        readonly = engine.docker("inspect", "-f", "{{.HostConfig.ReadonlyRootfs}}", *monitor)
        assert readonly.stdout.strip() == "true"
    finally:
        with contextlib.suppress(EngineError):
            engine.docker(*compose, "down", "-t", "10", "--volumes")
