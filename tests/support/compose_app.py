"""The seed's compose layout on a private Docker engine (tests/support/docker_engine.py): one
project with a `redis` service on host networking, bound to 127.0.0.1 on a free port,
its data in a host directory owned by 999:999, and the CLI's config for it. Used by
the compose tests, the production-size bench and the seed-compose bench."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import redis

from redis_runbook.lab.borglab import ensure_repo
from redis_runbook.ports import free_port
from tests.support.cli import run_cli
from tests.support.config import write_config
from tests.support.docker_engine import IMAGE_OWNER, DockerEngine
from tests.support.waiting import wait_until

OWNER = tuple(int(part) for part in IMAGE_OWNER.split(":"))


def host_path() -> str:
    """PATH without the session's Redis build: Debian's own tools, as on a compose host."""
    server = shutil.which("redis-server")
    build = str(Path(server).parent) if server else None
    parts = os.environ["PATH"].split(os.pathsep)
    return os.pathsep.join(p for p in parts if p != build or build == "/usr/bin")


@dataclass
class ComposeApp:
    """One compose project with a `redis` service and the CLI's config for it."""

    dir: Path
    data: Path
    port: int
    engine: DockerEngine

    @property
    def compose_file(self) -> Path:
        return self.dir / "docker-compose.yml"

    @property
    def config(self) -> Path:
        return self.dir / "redis-runbook.toml"

    def env(self) -> dict[str, str]:
        """The CLI's environment: this config, the engine, the host's Redis tools."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_RUNBOOK_")}
        return (
            base
            | self.engine.env
            | {
                "PATH": host_path(),
                "REDIS_RUNBOOK_CONFIG": str(self.config),
                "XDG_STATE_HOME": str(self.dir / "xdg"),
            }
        )

    def cli(self, *args: str, timeout: float = 600.0) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, env=self.env(), timeout=timeout)

    def compose(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        return self.engine.docker("compose", "-f", str(self.compose_file), *args, timeout=timeout)

    def client(self, socket_timeout: float = 30.0) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=socket_timeout)

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until the container's Redis answers and has loaded its data."""

        def answers() -> bool | None:
            try:
                with self.client() as client:
                    return client.info("persistence")["loading"] == 0 or None
            except redis.RedisError:
                return None

        wait_until(answers, f"the container's Redis on port {self.port} to answer", timeout)


#: Mounted over the image's redis-cli by `write_app(seed_cli=True)`: the seed's
#: `docker compose exec redis redis-cli ...` means port 6379, which no test may use.
SEED_CLI = """#!/bin/sh
# redis-cli on this service's port: the seed's commands name no port (6379).
for bin in /usr/local/bin/redis-cli /usr/bin/redis-cli; do
  [ -x "$bin" ] && exec "$bin" -p {port} "$@"
done
echo "redis-cli: not found" >&2
exit 127
"""


def write_app(
    root: Path, engine: DockerEngine, maxmemory: str = "256mb", seed_cli: bool = False
) -> ComposeApp:
    """The seed's compose layout (AOF everysec, noeviction, a long stop grace) on a
    free port of 127.0.0.1 with host networking, and a config with a borg repo.

    `seed_cli`: the container's `redis-cli` (first on its PATH, /usr/local/sbin) adds
    `-p PORT`, so that the seed's commands run as written (`docker compose exec redis
    redis-cli ping`, no port) reach this server and not the host's port 6379."""
    root.mkdir(parents=True)
    data = root / "data"
    data.mkdir()
    os.chown(data, *OWNER)
    port = free_port()
    app = ComposeApp(root, data, port, engine)
    mounts = f"      - {data}:/data\n"
    if seed_cli:
        wrapper = root / "redis-cli"
        wrapper.write_text(SEED_CLI.format(port=port))
        wrapper.chmod(0o755)
        mounts += f"      - {wrapper}:/usr/local/sbin/redis-cli:ro\n"
    app.compose_file.write_text(
        f"""services:
  redis:
    image: {engine.image}
    network_mode: host
    user: "{IMAGE_OWNER}"
    command: [redis-server, --port, "{port}", --bind, 127.0.0.1, --dir, /data,
              --appendonly, "yes", --appendfsync, everysec, --maxmemory, {maxmemory},
              --maxmemory-policy, noeviction, --save, "3600 1"]
    volumes:
{mounts}    stop_grace_period: 2m
"""
    )
    backup = ensure_repo(root)
    assert backup is not None
    write_config(
        app.config,
        {
            "target": {"url": f"redis://127.0.0.1:{port}/0"},
            "service": {
                "kind": "compose",
                "compose_file": str(app.compose_file),
                "compose_service": "redis",
                "data_dir": str(data),
                "container_data_dir": "/data",
                "owner": IMAGE_OWNER,
            },
            "server": {"maxmemory": maxmemory},
            # Room for a slow PING on a loaded host, as the lab tests allow.
            "thresholds": {"latency_ms": {"warning": 500, "critical": 1000}},
            "backup": {
                "kind": "borg",
                "repository": backup["repository"],
                "passphrase_file": backup["passphrase_file"],
            },
            "runbook": {"state_dir": str(root / "state")},
        },
    )
    return app
