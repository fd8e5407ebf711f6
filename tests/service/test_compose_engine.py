"""The compose backend end to end on a real Docker engine (tests/support/docker_engine.py):
Redis in a container of a compose project, host networking on 127.0.0.1, data in a
host directory owned by 999:999 as in the seed's compose file.

The CLI runs with Debian's own Redis tools on PATH (7.0 on bookworm) whatever the
session's Redis is: the shape of a host whose container runs Redis 8.4, where every
check must run with the service's own binaries."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from redis_runbook.config import load_config
from redis_runbook.lab.seed import SeedPlan, seed
from redis_runbook.ports import free_port
from redis_runbook.service.compose import THROWAWAY_LABEL
from tests.support.compose_app import OWNER, ComposeApp, write_app
from tests.support.docker_engine import IMAGE_OWNER, DockerEngine, EngineError
from tests.support.waiting import wait_until


@pytest.fixture
def app(tmp_path: Path, engine: DockerEngine) -> Iterator[ComposeApp]:
    """A running, seeded compose Redis; its containers are removed at teardown."""
    app = write_app(tmp_path / "app", engine)
    app.compose("up", "-d")
    app.wait_ready()
    seed(load_config(app.config, env={}).config.target, SeedPlan())
    yield app
    with contextlib.suppress(EngineError):
        app.compose("down", "-t", "0")


def persistent_keys(app: ComposeApp) -> set[bytes]:
    """Keys without a TTL (the seed's expiring keys come and go on their own)."""
    with app.client() as client:
        return {key for key in client.scan_iter(count=1000) if client.ttl(key) == -1}


def not_owned_by_image_user(tree: Path) -> list[Path]:
    """`tree` and everything under it whose owner is not the image's user."""
    return [
        path
        for path in [tree, *tree.rglob("*")]
        if (path.lstat().st_uid, path.lstat().st_gid) != OWNER
    ]


def test_the_engine_has_no_bridge_network(engine: DockerEngine) -> None:
    """Containers can only share the host's loopback: no bridge network exists."""
    names = set(engine.docker("network", "ls", "--format", "{{.Name}}").stdout.split())
    assert names == {"host", "none"}


def test_diagnose_reads_compose_state_and_logs_without_terminal_codes(app: ComposeApp) -> None:
    """A healthy container diagnoses clean; stopped, it is scenario A with the
    container's state and log lines free of compose's ESC[2K prefixes."""
    healthy = app.cli("diagnose", "--json")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    app.compose("stop", "-t", "30", "redis")
    down = app.cli("diagnose")
    assert down.returncode == 2, down.stdout + down.stderr
    assert "service: stopped (Exited (0)" in down.stdout
    assert "\x1b" not in down.stdout + down.stderr


def test_restart_saves_stops_starts_and_verifies_every_key(app: ComposeApp) -> None:
    """`recover restart` through `docker compose`: every key back after the restart,
    the data dir still the image user's. The dataset is written once (the checked
    BGSAVE): with the AOF on, the SIGTERM shutdown only fsyncs the AOF instead of
    saving the RDB again, and the save points are the container's own afterwards."""
    before = persistent_keys(app)
    done = app.cli("--yes", "recover", "restart")
    assert done.returncode == 0, done.stdout + done.stderr
    app.wait_ready()
    assert persistent_keys(app) == before
    assert not_owned_by_image_user(app.data) == []
    log = app.compose("logs", "--no-color", "--no-log-prefix", "redis").stdout
    assert "Background saving terminated with success" in log
    assert "Calling fsync() on the AOF file" in log
    assert "Saving the final RDB snapshot" not in log
    with app.client() as client:
        assert client.config_get("save") == {"save": "3600 1"}


def test_recover_aof_repairs_inside_the_container_and_keeps_the_owner(app: ComposeApp) -> None:
    """Garbage after the last command of the last AOF file, the container killed:
    `recover aof` checks and fixes with the container's own redis-check-aof; the copy
    set aside keeps the owner of what it copies."""
    with app.client() as client:
        client.set("runbook-test:last", "kept")
    before = persistent_keys(app)
    app.compose("kill", "-s", "SIGKILL", "redis")
    incr = sorted((app.data / "appendonlydir").glob("*.incr.aof"))[-1]
    with incr.open("ab") as handle:
        handle.write(b"!garbage!@#$%^&*\r\n")
    app.compose("start", "redis")  # refuses the file and exits

    def exited() -> bool | None:
        state = app.compose("ps", "--all", "--format", "{{.State}}", "redis").stdout
        return "exited" in state or None

    wait_until(exited, "the container to refuse the AOF and exit", timeout=120)
    found = app.cli("diagnose")
    assert found.returncode == 2
    assert "recover aof" in found.stdout + found.stderr
    fixed = app.cli("--yes", "recover", "aof")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    app.wait_ready()
    assert persistent_keys(app) == before
    aside = list(app.data.parent.glob("appendonlydir.*.before-fix")) + list(
        app.data.glob("appendonlydir.*.before-fix")
    )
    assert aside, "the AOF dir as it was is kept aside"
    assert [path for copy in aside for path in not_owned_by_image_user(copy)] == []


def test_backup_verify_and_restore_through_compose(app: ComposeApp) -> None:
    """backup create, backup verify and recover restore with the container's own
    Redis (the host's tools may be older than the archive's RDB): every key back,
    the swapped-in data dir owned by the image user."""
    before = persistent_keys(app)
    created = app.cli("backup", "create")
    assert created.returncode == 0, created.stdout + created.stderr
    verified = app.cli("backup", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    with app.client() as client:
        client.flushall()
    restored = app.cli("--yes", "recover", "restore", "--force", "--i-understand-data-loss")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    app.wait_ready()
    assert persistent_keys(app) == before
    assert not_owned_by_image_user(app.data) == []


def test_a_save_that_fails_before_the_stop_leaves_redis_running(app: ComposeApp) -> None:
    """The data dir not writable by the container's user: the BGSAVE before the
    stop fails, `recover restart` stops there and the container keeps running
    with every key."""
    before = persistent_keys(app)
    app.data.chmod(0o555)
    try:
        done = app.cli("--yes", "recover", "restart")
    finally:
        app.data.chmod(0o755)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "save before stopping: BGSAVE failed" in done.stdout + done.stderr
    state = app.compose("ps", "--all", "--format", "{{.State}}", "redis").stdout
    assert state.strip() == "running"
    assert persistent_keys(app) == before


def test_emergency_start_brings_the_container_back_empty_and_keeps_the_data(
    app: ComposeApp,
) -> None:
    """A container whose AOF base is cut in half (nothing `--fix` can repair):
    `emergency-start` moves the data dir aside whole, re-creates it owned by the
    image user, and the container starts empty on it."""
    app.compose("stop", "-t", "60", "redis")
    (base,) = list((app.data / "appendonlydir").glob("*.base.*"))
    base.write_bytes(base.read_bytes()[: base.stat().st_size // 2])
    broken = base.read_bytes()
    done = app.cli("--yes", "recover", "emergency-start", "--i-understand-data-loss")
    assert done.returncode == 0, done.stdout + done.stderr
    app.wait_ready()
    with app.client() as client:
        assert client.dbsize() == 0
    (aside,) = list(app.data.parent.glob("data.*.emergency"))
    assert (aside / "appendonlydir" / base.name).read_bytes() == broken
    assert not_owned_by_image_user(app.data) == []


def test_failover_fences_a_frozen_container_through_compose_then_promotes(
    tmp_path: Path, engine: DockerEngine
) -> None:
    """The master's container frozen (`docker compose pause`, Redis answers nothing):
    `failover --to` kills it through compose (so no restart policy brings it back
    to take writes) and promotes the replica, which keeps every key."""
    app = write_app(tmp_path / "app", engine)
    replica_port = free_port()
    text = app.compose_file.read_text()
    app.compose_file.write_text(
        text
        + f"""  replica:
    image: {engine.image}
    network_mode: host
    user: "{IMAGE_OWNER}"
    command: [redis-server, --port, "{replica_port}", --bind, 127.0.0.1, --dir, /tmp,
              --replicaof, 127.0.0.1, "{app.port}", --save, ""]
"""
    )
    config = app.config.read_text().replace(
        f'url = "redis://127.0.0.1:{app.port}/0"',
        f'url = "redis://127.0.0.1:{app.port}/0"\nreplicas = ["127.0.0.1:{replica_port}"]',
    )
    app.config.write_text(config)
    app.compose("up", "-d")
    try:
        app.wait_ready()
        seed(load_config(app.config, env={}).config.target, SeedPlan())
        replica = redis.Redis(port=replica_port, socket_timeout=30)

        def in_sync() -> bool | None:
            with app.client() as client:
                offset = client.info("replication")["master_repl_offset"]
            info = replica.info("replication")
            up = info.get("master_link_status") == "up"
            return (up and info.get("slave_repl_offset") == offset) or None

        wait_until(in_sync, "the replica to catch up", timeout=120)
        keys = persistent_keys(app)
        app.compose("pause", "redis")
        done = app.cli("--yes", "failover", "--to", f"127.0.0.1:{replica_port}",
                       "--i-understand-data-loss")  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        state = app.compose("ps", "--all", "--format", "{{.State}}", "redis").stdout
        assert state.strip() == "exited"
        assert replica.info("replication")["role"] == "master"
        with replica as promoted:
            held = {k for k in promoted.scan_iter(count=1000) if promoted.ttl(k) == -1}
        assert held == keys
    finally:
        with contextlib.suppress(EngineError):
            app.compose("down", "-t", "0")


def held_image(engine: DockerEngine, workdir: Path) -> str:
    """The service's image with a `redis-server` first on PATH that never starts
    Redis: a throwaway server that stays in its container, as one loading a big
    archive does."""
    image, container = f"{engine.image}-held", f"rrtest-held-{os.getpid()}"
    script = workdir / "redis-server"
    script.write_text("#!/bin/sh\nexec sleep 3600\n")
    script.chmod(0o755)
    engine.docker("create", "--name", container, engine.image, "true")
    try:
        engine.docker("cp", str(script), f"{container}:/usr/local/sbin/redis-server")
        engine.docker("commit", container, image)
    finally:
        engine.docker("rm", "--force", container)
    return image


def throwaway_containers(engine: DockerEngine) -> list[str]:
    """`ID COMMAND` of every container the tool ran with its throwaway label."""
    ps = engine.docker("ps", "--all", "--no-trunc", "--filter", f"label={THROWAWAY_LABEL}",
                       "--format", "{{.ID}} {{.Command}}")  # fmt: skip
    return ps.stdout.splitlines()


def test_a_drill_container_left_by_a_killed_run_is_removed_by_the_next(
    app: ComposeApp, engine: DockerEngine, tmp_path: Path
) -> None:
    """`backup verify` killed (SIGKILL) while its throwaway Redis runs in a
    container: a killed `docker run` client does not stop its container, so it is
    left running; the next run that needs one removes it first, and leaves none of
    its own."""
    created = app.cli("backup", "create")
    assert created.returncode == 0, created.stdout + created.stderr
    real = app.compose_file.read_text()
    app.compose_file.write_text(
        real.replace(f"image: {engine.image}", f"image: {held_image(engine, tmp_path)}")
    )
    tool = subprocess.Popen(
        [sys.executable, "-m", "redis_runbook", "backup", "verify"],
        env=app.env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:

        def drilling() -> list[str] | None:
            held = [row for row in throwaway_containers(engine) if "redis-server" in row]
            return held or None

        left = wait_until(drilling, "the verify drill's container", timeout=300)
    finally:
        tool.kill()
        tool.wait()
    assert [row for row in throwaway_containers(engine) if row in left] == left
    app.compose_file.write_text(real)
    verified = app.cli("backup", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr

    def none_left() -> bool | None:
        return throwaway_containers(engine) == [] or None

    wait_until(none_left, "no throwaway container to be left", timeout=60)
