"""A real Docker engine for the compose tests: Debian's `dockerd`, started by the test
session with its own socket, data root and exec root, no bridge, no iptables, no IP
forwarding, so that containers can only use the host's network (`network_mode:
host`) and bind 127.0.0.1. Images are imported locally (no registry is reachable):
a Debian bookworm tree with redis-server (tests/support/docker-prerequisites) and,
when the session runs on a Redis 8 build, that build's binaries in /usr/local/bin as
in the official image. Containers run as uid/gid 999 like the official image."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PREREQUISITES = Path(__file__).resolve().parent / "docker-prerequisites"
#: The image's user, as in the official redis image.
IMAGE_OWNER = "999:999"


class EngineError(RuntimeError):
    """The engine or an image could not be set up."""


@dataclass(frozen=True)
class DockerEngine:
    """One private dockerd; `env` points `docker` (and the tool) at it."""

    host: str
    image: str
    redis_version: str

    @property
    def env(self) -> dict[str, str]:
        return {"DOCKER_HOST": self.host}

    @property
    def base_image(self) -> str:
        """The Debian tree alone (Debian's Redis 7.0, python3, borg), no build added."""
        return f"rrtest/redis-base:{self.redis_version}"

    def docker(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        """`docker ARGS` against this engine; EngineError when it fails."""
        done = subprocess.run(
            ["docker", *args],
            env=os.environ | self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            raise EngineError(f"docker {' '.join(args)} failed: {done.stderr.strip()}")
        return done


def redis_version(executable: str) -> str:
    """`8.6.3` from `redis-server --version`."""
    out = subprocess.run([executable, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.split("v=", 1)[1].split()[0]


def _prerequisites() -> Path:
    done = subprocess.run([str(PREREQUISITES)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise EngineError(f"{PREREQUISITES} failed: {done.stderr.strip()[-2000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def _wait_for_engine(engine: DockerEngine, daemon: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise EngineError(f"dockerd exited ({daemon.returncode}): {log.read_text()[-2000:]}")
        with contextlib.suppress(EngineError, subprocess.TimeoutExpired):
            engine.docker("version", timeout=10)
            return
        time.sleep(0.2)
    raise EngineError(f"dockerd did not answer within 120 s: {log.read_text()[-2000:]}")


def _import_images(engine: DockerEngine, rootfs: Path, server: str) -> None:
    """The session's image: the bookworm tree, plus the session's Redis build in
    /usr/local/bin when it is not the tree's own (Debian's /usr/bin one)."""
    base = engine.base_image
    engine.docker(
        "import", "-c", f"USER {IMAGE_OWNER}", "-c", "WORKDIR /data",
        "-c", 'CMD ["redis-server"]', str(rootfs), base,
    )  # fmt: skip
    if Path(server).resolve().parent == Path("/usr/bin"):
        engine.docker("tag", base, engine.image)
        return
    name = f"rrtest-build-{os.getpid()}"
    engine.docker("create", "--name", name, "--network", "none", base)
    try:
        engine.docker("cp", f"{Path(server).parent}/.", f"{name}:/usr/local/bin/")
        engine.docker("commit", name, engine.image)
    finally:
        engine.docker("rm", "-f", name)


@contextlib.contextmanager
def docker_engine() -> Iterator[DockerEngine]:
    """Start a private dockerd, import the session's Redis image, yield; stop it."""
    if shutil.which("dockerd") is None or shutil.which("docker") is None:
        raise EngineError("dockerd is not installed (./run test installs Debian's docker.io)")
    server = shutil.which("redis-server")
    if server is None:
        raise EngineError("redis-server is not on PATH")
    rootfs = _prerequisites()
    version = redis_version(server)
    # Short paths: containerd's sockets live under the exec root (108-byte limit).
    top = Path(tempfile.mkdtemp(prefix="rrdk-"))
    sock = top / "docker.sock"
    log = top / "dockerd.log"
    argv = [
        "dockerd", "--bridge=none", "--iptables=false", "--ip6tables=false",
        "--ip-forward=false", "--ip-masq=false", "--userland-proxy=false",
        f"--host=unix://{sock}", f"--data-root={top / 'root'}", f"--exec-root={top / 'x'}",
        f"--pidfile={top / 'dockerd.pid'}",
    ]  # fmt: skip
    with log.open("wb") as out:
        daemon = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    engine = DockerEngine(f"unix://{sock}", f"rrtest/redis:{version}", version)
    try:
        _wait_for_engine(engine, daemon, log)
        _import_images(engine, rootfs, server)
        yield engine
    finally:
        with contextlib.suppress(EngineError, subprocess.TimeoutExpired):
            ids = engine.docker("ps", "-aq", timeout=60).stdout.split()
            if ids:
                engine.docker("rm", "-f", *ids, timeout=120)
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=120)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        _unmount_under(top)
        shutil.rmtree(top, ignore_errors=True)


def _unmount_under(top: Path) -> None:
    """What dockerd leaves mounted under its exec root once stopped (its default
    network namespace, bound at x/netns/default): unmounted, so the tree can go."""
    prefix = f"{top}/"
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
