"""Faults on a running server, injected for real: kill -9 during writes, SIGSTOP,
memory filled to maxmemory under noeviction, a Lua busy loop, CLIENT PAUSE, clients
blocked in BLPOP, and a full disk (a small tmpfs mounted over the data dir)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import redis

from redis_runbook.errors import LabError
from redis_runbook.lab.faults_base import (
    Injected,
    attempt_start,
    client,
    kill_if_running,
    stamp,
)
from redis_runbook.lab.holder import BLOCKED_CLIENT_NAME
from redis_runbook.lab.server import RedisServer
from redis_runbook.replies import parse_info
from redis_runbook.service.process import proc_state
from redis_runbook.target import make_client

VALUE = "v" * 10_000
FILL_TIMEOUT_S = 60.0
UMOUNT_TIMEOUT_S = 10.0
BLOCKED_KEY = "fault:blocked:queue"
#: Redis 8 returns one TIME for the whole of a script and offers os.clock() (the
#: server's CPU seconds, which a busy loop advances; redis/redis#12971) instead;
#: 7.0 has no `os` (reading the global is an error there, hence the pcall) and a
#: TIME that moves.
BUSY_SCRIPT = """
local has_clock, clock = pcall(function() return os.clock end)
local function now_us()
  if has_clock and clock then return clock() * 1000000 end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local start = now_us()
while now_us() - start <= tonumber(ARGV[1]) do end
return 'done'
"""


def _need_running(server: RedisServer, fault: str) -> int:
    pid = server.pid()
    if pid is None:
        raise LabError(f"{fault} needs a running server", "redis-runbook lab up")
    return pid


def _info(conn: redis.Redis, section: str) -> dict[str, str]:
    return parse_info(str(conn.execute_command("INFO", section)))


def _poll(probe: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise LabError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


def kill(server: RedisServer) -> Injected:
    """kill -9 while a client is writing: the crash of seed §3.1."""
    _need_running(server, "kill")
    acked = [0]
    stop = threading.Event()

    def writer() -> None:
        conn = client(server)
        try:
            while not stop.is_set():
                pipe = conn.pipeline(transaction=False)
                for n in range(50):
                    pipe.set(f"fault:kill:{acked[0] + n}", "x" * 100)
                pipe.execute()
                acked[0] += 50
        except redis.RedisError:
            pass  # the server died under us: that is the point
        finally:
            conn.close()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        _poll(lambda: acked[0] >= 500, "the writer to get going", 10.0)
        kill_if_running(server)
    finally:
        stop.set()
        thread.join(10.0)
    summary = f"SIGKILL while writing ({acked[0]} writes acknowledged)"
    return Injected("kill", summary, server_state="stopped")


def hang(server: RedisServer) -> Injected:
    """SIGSTOP: the process exists, accepts TCP (the kernel does), answers nothing."""
    pid = _need_running(server, "hang")
    os.kill(pid, signal.SIGSTOP)
    _poll(lambda: proc_state(pid) in ("T", "t"), "the process to stop", 5.0)

    def resume() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)

    summary = f"SIGSTOP sent to redis-server pid {pid} (undo: lab break unhang / kill -CONT)"
    return Injected("hang", summary, server_state="hung", undo=resume)


def oom(server: RedisServer) -> Injected:
    """Fill memory with 10 KB strings until a write is refused with OOM (maxmemory
    reached under noeviction)."""
    _need_running(server, "oom")
    conn = client(server)
    written = 0
    try:
        reply = conn.execute_command("CONFIG GET", "maxmemory*")
        config = {str(k): str(v) for k, v in dict(reply).items()}
        maxmemory = int(config.get("maxmemory", 0))
        policy = config.get("maxmemory-policy", "")
        if not maxmemory or policy != "noeviction":
            raise LabError(
                f"oom needs maxmemory set and policy noeviction (maxmemory {maxmemory}, "
                f"policy {policy})",
                "redis-runbook lab up --maxmemory 64mb",
            )
        deadline = time.monotonic() + FILL_TIMEOUT_S
        while time.monotonic() < deadline:
            used = int(_info(conn, "memory")["used_memory"])
            batch = max(1, (maxmemory - used) // (2 * len(VALUE)))
            pipe = conn.pipeline(transaction=False)
            for _ in range(batch):
                pipe.set(f"fault:oom:{written}", VALUE)
                written += 1
            replies = pipe.execute(raise_on_error=False)
            if any(isinstance(r, redis.exceptions.OutOfMemoryError) for r in replies):
                break
        else:
            raise LabError(f"memory did not fill within {FILL_TIMEOUT_S:g} s")
    finally:
        conn.close()
    summary = f"wrote {written} x 10 KB under maxmemory {maxmemory} until a write got OOM"
    return Injected("oom", summary)


def slow_script(server: RedisServer, seconds: float = 30.0) -> Injected:
    """A Lua busy loop of `seconds`: the event loop is held (read-only: SCRIPT KILL
    works once busy-reply-threshold has passed). The script keeps running after this
    returns; `release()` kills it with SCRIPT KILL and waits until Redis answers."""
    _need_running(server, "slow-script")
    target = server.target()
    conn = make_client(target.model_copy(update={"command_timeout": seconds + 10}))
    connection = conn.connection_pool.get_connection()
    connection.send_command("EVAL", BUSY_SCRIPT, 0, int(seconds * 1_000_000))
    probe = make_client(target.model_copy(update={"connect_timeout": 0.2}))

    def busy() -> bool:
        try:
            probe.execute_command("PING")
        except redis.exceptions.BusyLoadingError:
            return False
        except redis.ResponseError as exc:
            return str(exc).startswith("BUSY")
        except redis.RedisError:
            return True  # no answer: the event loop is in the script
        return False

    try:
        _poll(busy, "the script to hold the server", 5.0)
    finally:
        probe.close()
    connection.disconnect()  # the script runs on; the server no longer needs us
    conn.close()

    def end() -> None:
        """SCRIPT KILL (the loop writes nothing; Redis takes it once the script has run
        past busy-reply-threshold), then wait until Redis answers."""
        killer = make_client(target.model_copy(update={"command_timeout": seconds + 10}))
        try:
            killer.execute_command("SCRIPT", "KILL")
        except redis.RedisError:
            pass  # NOTBUSY: it has ended already
        finally:
            killer.close()
        # A bound, not a timing: on a starved host the killed script may take a while
        # to reach the hook that ends it.
        _poll(lambda: _answers(server), "the script to end", max(seconds + 10, 120.0))

    summary = f"a Lua busy loop of {seconds:g} s holds the event loop"
    return Injected("slow-script", summary, undo=end)


def _answers(server: RedisServer) -> bool:
    conn = make_client(server.target().model_copy(update={"connect_timeout": 2.0}))
    try:
        return bool(conn.execute_command("PING"))
    except redis.RedisError:
        return False
    finally:
        conn.close()


def pause(server: RedisServer, seconds: float = 30.0) -> Injected:
    """CLIENT PAUSE <ms> (ALL): every client waits. It cannot be lifted from a paused
    client connection, so `release()` waits for it to end."""
    _need_running(server, "pause")
    conn = client(server)
    try:
        conn.execute_command("CLIENT", "PAUSE", int(seconds * 1000))
    finally:
        conn.close()

    def wait_end() -> None:
        _poll(lambda: _answers(server), "the pause to end", seconds + 10)

    return Injected("pause", f"CLIENT PAUSE {int(seconds * 1000)} (ALL)", undo=wait_end)


def blocked_count(server: RedisServer) -> int:
    """INFO blocked_clients."""
    conn = client(server)
    try:
        return int(_info(conn, "clients").get("blocked_clients", "0"))
    finally:
        conn.close()


def blocked_clients(
    server: RedisServer, count: int = 150, seconds: float = 30.0, config: Path | None = None
) -> Injected:
    """`count` clients blocked in BLPOP for `seconds`. In-process (the connections live
    until `release()`), or, with `config` (a redis-runbook.toml naming the server), in
    a detached holder process that outlives the caller."""
    _need_running(server, "blocked-clients")
    before = blocked_count(server)
    if config is not None:
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "redis_runbook.lab.holder",
                str(config),
                str(count),
                str(seconds),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _poll(lambda: blocked_count(server) >= before + count, "the clients to block", 15.0)
        summary = f"{count} clients blocked in BLPOP {BLOCKED_KEY} for {seconds:g} s"
        return Injected("blocked-clients", summary + " (detached holder)")
    update = {"command_timeout": seconds + 10, "client_name": BLOCKED_CLIENT_NAME}
    holder = make_client(server.target().model_copy(update=update))
    connections = []
    try:
        for _ in range(count):
            connection = holder.connection_pool.make_connection()
            connection.connect()
            connection.send_command("BLPOP", BLOCKED_KEY, int(seconds))
            connections.append(connection)
        _poll(lambda: blocked_count(server) >= before + count, "the clients to block", 15.0)
    except BaseException:
        for connection in connections:
            connection.disconnect()
        raise

    def unblock() -> None:
        for connection in connections:
            connection.disconnect()
        holder.close()

    summary = f"{count} clients blocked in BLPOP {BLOCKED_KEY} for {seconds:g} s"
    return Injected("blocked-clients", summary, undo=unblock)


def _mounted_tmpfs(path: Path) -> bool:
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return False
    return any(line.split()[1:3] == [str(path), "tmpfs"] for line in mounts if line.strip())


def _data_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def disk_full(server: RedisServer, size_mb: int = 2) -> Injected:
    """A full disk, for real: stop the server (SHUTDOWN SAVE), mount a `size_mb` tmpfs
    over its data dir (the original files stay untouched underneath), copy the data
    in, start, and write until the AOF write fails (writes refused with MISCONF).
    Needs root. `release()` kills the server, keeps the tmpfs contents in
    `<workdir>/disk-full.<stamp>.aside/` and unmounts (the originals reappear);
    `heal()` does the same and starts the server again."""
    _need_running(server, "disk-full")
    if os.geteuid() != 0:
        raise LabError("disk-full mounts a tmpfs: it needs root", "sudo redis-runbook lab break")
    data_dir = server.data_dir
    if _mounted_tmpfs(data_dir):
        raise LabError(f"{data_dir} is already a tmpfs (disk-full injected twice?)")
    size_mb = max(size_mb, -(-2 * _data_bytes(data_dir) // (1024 * 1024)) + 1)
    server.stop(save=True)
    staging = server.workdir / f"disk-full.{stamp()}.staging"
    shutil.copytree(data_dir, staging)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(data_dir)],
        check=True,
        timeout=30,
    )
    try:
        shutil.copytree(staging, data_dir, dirs_exist_ok=True)
        if attempt_start(server) != "running":
            raise LabError(f"the server did not start on the tmpfs: {server.last_words()}")
        _fill_disk(server)
    except BaseException:
        _unmount_keeping_copy(server)  # back to the untouched originals
        raise
    finally:
        shutil.rmtree(staging)  # our own copy: the originals are intact under the mount

    def restore() -> None:
        _unmount_keeping_copy(server)

    summary = f"{size_mb} MiB tmpfs mounted over {data_dir} and filled: AOF writes fail"
    return Injected("disk-full", summary, undo=restore)


def _fill_disk(server: RedisServer) -> None:
    conn = client(server)
    written = 0
    deadline = time.monotonic() + FILL_TIMEOUT_S
    try:
        while _info(conn, "persistence").get("aof_last_write_status") != "err":
            if time.monotonic() > deadline:
                raise LabError("the disk did not fill in time")
            with contextlib.suppress(redis.ResponseError):  # MISCONF once it fails
                conn.set(f"fault:disk:{written}", VALUE)
            written += 1
    finally:
        conn.close()


def heal(server: RedisServer) -> list[str]:
    """Undo what the lab faults leave behind without touching data: resume a stopped
    process; unmount a disk-full tmpfs (its contents kept aside) and start again."""
    done = []
    pid = server.pid()
    if pid is not None and proc_state(pid) in ("T", "t"):
        os.kill(pid, signal.SIGCONT)
        done.append(f"resumed pid {pid} (SIGCONT)")
    if _mounted_tmpfs(server.data_dir):
        aside = _unmount_keeping_copy(server)
        done.append(f"unmounted the tmpfs on {server.data_dir}; its contents are in {aside}")
        state = attempt_start(server)
        done.append(f"server {state} on the original data")
    return done


def _unmount_keeping_copy(server: RedisServer) -> Path:
    """Stop the server, copy the tmpfs contents aside, unmount; returns the copy."""
    kill_if_running(server)
    aside = server.workdir / f"disk-full.{stamp()}.aside"
    shutil.copytree(server.data_dir, aside)
    # A BGSAVE child of the killed server may still be finishing in the dir: wait for
    # it (bounded), then detach the mount lazily rather than fail.
    deadline = time.monotonic() + UMOUNT_TIMEOUT_S
    while (
        subprocess.run(
            ["umount", str(server.data_dir)], capture_output=True, check=False, timeout=30
        ).returncode
        != 0
    ):
        if time.monotonic() > deadline:
            subprocess.run(["umount", "-l", str(server.data_dir)], check=True, timeout=30)
            break
        time.sleep(0.1)
    return aside
