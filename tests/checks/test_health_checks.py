"""Every health check driven into its states on real redis-server processes:
memory filled for real, clients connected and blocked for real, a Lua busy
script, a BGSAVE that really fails, a replica whose master really dies."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
from collections.abc import Container, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis

from redis_runbook.checks import CHECK_NAMES, HealthReport, run_health
from redis_runbook.config import Band, ServerExpectations
from redis_runbook.lab.faults_live import BUSY_SCRIPT
from redis_runbook.lab.server import PRODUCTION_LIKE, RedisServer
from redis_runbook.status import CheckResult, Status, worst
from tests.support.servers import (
    HEALTH_JSON_KEYS,
    RedisFactory,
    config_for,
    info,
    named,
    plain_client,
)
from tests.support.waiting import wait_until

VALUE = "v" * 10_000  # 10 KB: one SET moves a 4 MB instance by about a quarter percent


def health_check(server: RedisServer, name: str, **thresholds: Any) -> CheckResult:
    """Run health against `server` and return the check called `name`."""
    return named(run_health(config_for(server, **thresholds)), name)


def poll_check(
    server: RedisServer,
    name: str,
    until: Container[Status],
    what: str,
    **thresholds: Any,
) -> CheckResult:
    """Run health repeatedly until the check called `name` is present (the server may
    not answer yet) with a status in `until`; return that result."""

    def probe() -> CheckResult | None:
        report = run_health(config_for(server, **thresholds))
        found = [c for c in report.checks if c.name == name and c.status in until]
        return found[0] if found else None

    return wait_until(probe, what)


# Write rounds before a fill is called stuck (a count, not a clock: a loaded machine
# is slow, not wrong).
MAX_ROUNDS = 10_000
BATCH_MAX = 10


def memory_percent(client: redis.Redis) -> float:
    mem = info(client, "memory")
    return float(mem["used_memory"]) / float(mem["maxmemory"]) * 100


def fill_to(client: redis.Redis, percent: float, prefix: str) -> float:
    """SET 10 KB strings until used_memory / maxmemory > percent. Each batch covers at
    most half of the remaining room and at most 10 keys (a pipelined batch sits in the
    query and AOF buffers, counted in used_memory, until a loaded server drains them),
    so the fill stops just past `percent`; the figure returned is read once those
    buffers are drained."""
    written = 0
    rounds = 0
    while (current := settled_percent(client)) <= percent:
        rounds += 1
        assert rounds < MAX_ROUNDS, f"memory stuck at {current:.1f} %"
        maxmemory = float(info(client, "memory")["maxmemory"])
        room = (percent - current) / 100 * maxmemory
        pipe = client.pipeline(transaction=False)
        for _ in range(min(BATCH_MAX, max(1, int(room / (2 * len(VALUE)))))):
            pipe.set(f"{prefix}:{written}", VALUE)
            written += 1
        pipe.execute()
    return current


def settled_percent(client: redis.Redis) -> float:
    """memory_percent once two reads agree within 0.5 % (transient buffers gone)."""
    previous = memory_percent(client)
    for _ in range(MAX_ROUNDS):
        time.sleep(0.05)
        current = memory_percent(client)
        if abs(current - previous) < 0.5:
            return current
        previous = current
    return previous


# --- memory -------------------------------------------------------------------------------


def test_memory_ok_then_warning_then_critical(redis_factory: RedisFactory) -> None:
    server = redis_factory({"maxmemory": "4mb"})
    client = plain_client(server)
    assert int(info(client, "memory")["maxmemory"]) == 4 * 1024 * 1024
    assert memory_percent(client) < 70, "baseline too high for a 4 MB maxmemory"
    assert health_check(server, "memory").status is Status.OK

    reached = fill_to(client, 75, "fill")
    assert 70 < reached < 85
    result = health_check(server, "memory")
    assert result.status is Status.WARNING
    assert result.metric is not None
    assert 70 < result.metric <= 85

    reached = fill_to(client, 90, "more")
    assert 85 < reached < 100
    result = health_check(server, "memory")
    assert result.status is Status.CRITICAL
    assert result.hint is not None
    client.close()


def test_oom_rejection_is_counted(redis_factory: RedisFactory) -> None:
    server = redis_factory({"maxmemory": "4mb"})
    client = plain_client(server)
    assert health_check(server, "oom_rejections").status is Status.OK
    fill_to(client, 90, "fill")
    refused: redis.exceptions.ResponseError | None = None
    for n in range(2000):
        try:
            client.set(f"over:{n}", VALUE)
        except redis.exceptions.ResponseError as exc:
            refused = exc
            break
    assert isinstance(refused, redis.exceptions.OutOfMemoryError), refused

    report = run_health(config_for(server))
    oom = named(report, "oom_rejections")
    assert oom.status is Status.WARNING
    assert oom.metric == 1
    assert named(report, "memory").status is Status.CRITICAL
    client.close()


@pytest.mark.parametrize(
    ("policy", "status"),
    [
        ("noeviction", Status.OK),
        ("allkeys-lru", Status.CRITICAL),
        ("volatile-ttl", Status.CRITICAL),
    ],
)
def test_maxmemory_policy(redis_factory: RedisFactory, policy: str, status: Status) -> None:
    server = redis_factory({"maxmemory-policy": policy})
    result = health_check(server, "maxmemory_policy")
    assert result.status is status
    assert result.value == policy


def test_evicted_keys_warning_then_critical(redis_factory: RedisFactory) -> None:
    server = redis_factory({"maxmemory": "4mb", "maxmemory-policy": "allkeys-lru"})
    client = plain_client(server)
    assert health_check(server, "evicted_keys").status is Status.OK

    def write_until_evicted(more_than: int, batch: int) -> int:
        rounds = 0
        while (evicted := int(info(client, "stats")["evicted_keys"])) <= more_than:
            rounds += 1
            assert rounds < MAX_ROUNDS, f"only {evicted} key(s) evicted"
            pipe = client.pipeline(transaction=False)
            for _ in range(batch):
                pipe.set(f"k:{time.monotonic_ns()}", VALUE)
            pipe.execute()
        return evicted

    evicted = write_until_evicted(0, batch=5)
    assert evicted <= 100
    result = health_check(server, "evicted_keys")
    assert result.status is Status.WARNING
    assert result.metric is not None
    assert result.metric >= evicted

    write_until_evicted(100, batch=20)
    assert health_check(server, "evicted_keys").status is Status.CRITICAL
    client.close()


def test_fragmentation(redis_server: RedisServer) -> None:
    with plain_client(redis_server) as client:
        mem = info(client, "memory")
    # A fresh instance has a high ratio but far fewer than 100 MB wasted: not worth a page.
    assert int(mem["mem_fragmentation_bytes"]) < 100 * 1024 * 1024
    assert health_check(redis_server, "fragmentation").status is Status.OK

    assert float(mem["mem_fragmentation_ratio"]) > 1
    result = health_check(
        redis_server,
        "fragmentation",
        fragmentation_min_bytes=0,
        fragmentation_ratio=Band(warning=0.1, critical=0.2),
    )
    assert result.status is Status.CRITICAL
    assert result.hint is not None


# --- clients ------------------------------------------------------------------------------


def test_connected_clients_bands(redis_server: RedisServer) -> None:
    band = Band(warning=5, critical=10)
    probe = plain_client(redis_server)
    extra: list[redis.Redis] = []

    def connect_until(total: int) -> None:
        """Open clients until the server counts `total` (health adds one more)."""
        while int(info(probe, "clients")["connected_clients"]) < total:
            client = plain_client(redis_server)
            assert client.ping()
            extra.append(client)

    try:
        assert health_check(redis_server, "connected_clients", connected_clients=band).status is (
            Status.OK
        )
        connect_until(7)
        result = health_check(redis_server, "connected_clients", connected_clients=band)
        assert result.status is Status.WARNING
        assert result.metric is not None
        assert 5 < result.metric <= 10
        connect_until(11)
        result = health_check(redis_server, "connected_clients", connected_clients=band)
        assert result.status is Status.CRITICAL
        assert result.hint is not None
    finally:
        for client in [probe, *extra]:
            client.close()


def test_blocked_clients_name_the_command(redis_server: RedisServer) -> None:
    band = Band(warning=1, critical=2)
    control = plain_client(redis_server)
    blockers = [plain_client(redis_server) for _ in range(3)]

    def blocked() -> int:
        return int(info(control, "clients")["blocked_clients"])

    futures: list[Future[Any]] = []
    with ThreadPoolExecutor(max_workers=len(blockers)) as pool:
        try:
            assert health_check(redis_server, "blocked_clients", blocked_clients=band).status is (
                Status.OK
            )
            futures += [pool.submit(blockers[i].blpop, ["jobs"], 5) for i in range(2)]
            wait_until(lambda: blocked() == 2, "two clients blocked in BLPOP")
            result = health_check(redis_server, "blocked_clients", blocked_clients=band)
            assert result.status is Status.WARNING
            assert "blpop 2" in result.summary

            futures.append(pool.submit(blockers[2].blpop, ["jobs"], 5))
            wait_until(lambda: blocked() == 3, "three clients blocked in BLPOP")
            result = health_check(redis_server, "blocked_clients", blocked_clients=band)
            assert result.status is Status.CRITICAL
            assert "blpop 3" in result.summary
        finally:
            control.lpush("jobs", *range(len(blockers)))  # releases the blocked threads
    assert [f.result() is not None for f in futures] == [True, True, True]
    for client in [control, *blockers]:
        client.close()


def test_rejected_connections(redis_factory: RedisFactory) -> None:
    server = redis_factory({"maxclients": "3"})
    assert server.port is not None
    assert health_check(server, "rejected_connections").status is Status.OK
    held: list[socket.socket] = []
    rejection = b""
    try:
        for _ in range(10):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            held.append(sock)
            sock.sendall(b"PING\r\n")
            reply = sock.recv(200)
            if reply.startswith(b"-"):
                rejection = reply
                break
            assert reply == b"+PONG\r\n"
    finally:
        for sock in held:
            sock.close()
    assert b"max number of clients reached" in rejection

    # The health run needs a slot too: wait until the server has seen the closes.
    result = poll_check(server, "rejected_connections", set(Status), "a free client slot")
    assert result.status is Status.WARNING
    assert result.metric is not None
    assert result.metric >= 1


# --- latency ------------------------------------------------------------------------------


def test_ping_latency_ok(redis_server: RedisServer) -> None:
    # One PING on loopback is far below 1 ms; a loaded machine may stall a single
    # one, so several tries are allowed, each evaluated with the default thresholds.
    results = []
    for _ in range(5):
        results.append(health_check(redis_server, "ping_latency"))
        if results[-1].status is Status.OK:
            break
    assert results[-1].status is Status.OK, [r.value for r in results]
    assert results[-1].summary.startswith("PING answered in ")


def test_a_busy_script_is_a_latency_spike_not_a_slow_handshake(
    redis_factory: RedisFactory,
) -> None:
    """A script holds the event loop while health connects: the handshake waits it
    out and PING then answers at once. ping_latency names the wait without counting it
    (a busy host makes the handshake long too, issue 12 item 13); the stall itself is
    Redis' own record, LATENCY LATEST, read by latency_spikes."""
    # The script must end before Redis starts answering BUSY (default: after 5 s, the
    # script's own length: a loaded machine crossed it, and BUSY is another verdict).
    server = redis_factory({"latency-monitor-threshold": "100", "busy-reply-threshold": "60000"})
    runner = plain_client(server)
    assert runner.eval(BUSY_SCRIPT, 0, 1000) == "done"  # the script runs and ends
    # No PONG within a second: the script holds the event loop (a loaded machine may
    # delay one PING by tens of ms, not by a second).
    probe = plain_client(server, socket_timeout=1.0)

    def script_running() -> bool:
        try:
            probe.ping()
        except redis.exceptions.TimeoutError:
            return True  # the event loop is stuck in the script
        return False

    # Health waits the script out (a connect timeout longer than the script).
    config = config_for(server)
    patient = config.model_copy(
        update={
            "target": config.target.model_copy(
                update={"connect_timeout": 60.0, "command_timeout": 60.0}
            )
        }
    )
    with ThreadPoolExecutor(max_workers=1) as pool:
        busy = pool.submit(runner.eval, BUSY_SCRIPT, 0, 5_000_000)  # 5 s
        try:
            wait_until(script_running, "the busy script to start", timeout=30)
            report = run_health(patient)
        finally:
            probe.close()
        assert busy.result(timeout=60) == "done"
    latency = named(report, "ping_latency")
    assert "handshake waited" in latency.summary, latency.summary
    spikes = named(run_health(config), "latency_spikes")
    assert spikes.status is Status.WARNING, spikes.summary  # a spike that has ended
    assert "worst command" in spikes.summary
    runner.close()


# --- persistence --------------------------------------------------------------------------


def test_aof_off(redis_factory: RedisFactory) -> None:
    server = redis_factory({"appendonly": "no"})
    result = health_check(server, "aof")
    assert result.status is Status.WARNING
    assert result.value == "off"
    as_configured = named(
        run_health(config_for(server, expect=ServerExpectations(appendonly=False))), "aof"
    )
    assert as_configured.status is Status.OK


def test_aof_on_is_ok(redis_server: RedisServer) -> None:
    result = health_check(redis_server, "aof")
    assert result.status is Status.OK
    assert result.value == "on"


def test_aof_appendfsync_drift(redis_factory: RedisFactory) -> None:
    server = redis_factory({"appendfsync": "always"})
    result = health_check(server, "aof")
    assert result.status is Status.WARNING
    assert "appendfsync is always" in result.summary
    expected = named(
        run_health(config_for(server, expect=ServerExpectations(appendfsync="always"))), "aof"
    )
    assert expected.status is Status.OK


def test_rdb_failed_bgsave(redis_server: RedisServer) -> None:
    client = plain_client(redis_server)
    assert health_check(redis_server, "rdb").status is Status.OK
    dbfilename = PRODUCTION_LIKE["dbfilename"]
    # BGSAVE writes temp-<pid>.rdb, then renames it onto dbfilename: a directory of
    # that name makes the rename fail, even for root.
    (redis_server.data_dir / dbfilename).mkdir()
    assert client.bgsave()

    def finished() -> dict[str, Any] | None:
        persistence = info(client, "persistence")
        return None if persistence["rdb_bgsave_in_progress"] else persistence

    assert wait_until(finished, "BGSAVE to finish")["rdb_last_bgsave_status"] == "err"
    result = health_check(redis_server, "rdb")
    assert result.status is Status.CRITICAL
    assert result.value == "bgsave error"
    client.close()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: a real full disk, not a simulated one (needs root, as CI has)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs ./run test as root)")
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], check=True)
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_aof_write_error_on_a_full_disk(redis_factory: RedisFactory, tiny_disk: Path) -> None:
    server = redis_factory(settings={"dir": str(tiny_disk)})
    client = plain_client(server)
    assert health_check(server, "aof").status is Status.OK

    def aof_failed() -> bool:
        with contextlib.suppress(redis.ResponseError):  # MISCONF once the AOF fails
            client.set(f"fill:{time.monotonic_ns()}", VALUE)
        return bool(info(client, "persistence")["aof_last_write_status"] == "err")

    wait_until(aof_failed, "the AOF to hit the full disk")
    with pytest.raises(redis.ResponseError, match="MISCONF"):
        client.set("one-more", "x")  # Redis now refuses writes: the incident is real
    result = health_check(server, "aof", latency_ms=Band(warning=500, critical=1000))
    assert result.status is Status.CRITICAL
    assert result.value == "write error"
    assert "MISCONF" in result.summary
    client.close()


def test_aof_rewrite_time(redis_server: RedisServer) -> None:
    band = Band(warning=0, critical=1)
    client = plain_client(redis_server)
    assert info(client, "persistence")["aof_last_rewrite_time_sec"] == -1
    result = health_check(redis_server, "aof_rewrite_time", aof_rewrite_seconds=band)
    assert (result.status, result.summary) == (Status.OK, "no AOF rewrite yet")

    # rdb-key-save-delay (µs per key) also slows the RDB preamble of an AOF rewrite.
    client.mset({f"k{i}": i for i in range(3)})
    client.config_set("rdb-key-save-delay", 700_000)
    assert client.bgrewriteaof()
    running = poll_check(
        redis_server,
        "aof_rewrite_time",
        {Status.WARNING, Status.CRITICAL},
        "the running rewrite to pass 0 s",
        aof_rewrite_seconds=band,
    )
    assert running.status is Status.WARNING
    assert running.summary.startswith("running AOF rewrite for")

    def rewritten() -> dict[str, Any] | None:
        persistence = info(client, "persistence")
        busy = persistence["aof_rewrite_in_progress"] or persistence["aof_rewrite_scheduled"]
        return None if busy else persistence

    took = wait_until(rewritten, "the AOF rewrite to finish")["aof_last_rewrite_time_sec"]
    assert took > 1
    result = health_check(redis_server, "aof_rewrite_time", aof_rewrite_seconds=band)
    assert result.status is Status.CRITICAL
    assert result.value == f"{took} s"
    assert result.summary.startswith("last AOF rewrite took")
    result = health_check(redis_server, "aof_rewrite_time")
    assert result.status is Status.OK  # default 10 / 60 s
    client.close()


def test_rdb_age(redis_server: RedisServer) -> None:
    assert health_check(redis_server, "rdb_age").status is Status.OK  # saved < 26 h ago
    result = health_check(redis_server, "rdb_age", rdb_age_hours=Band(warning=0, critical=1000))
    assert result.status is Status.WARNING
    assert result.metric is not None
    assert result.metric > 0
    result = health_check(redis_server, "rdb_age", rdb_age_hours=Band(warning=0, critical=0))
    assert result.status is Status.CRITICAL
    no_schedule = config_for(
        redis_server,
        expect=ServerExpectations(rdb_schedule="none"),
        rdb_age_hours=Band(warning=0, critical=0),
    )
    assert named(run_health(no_schedule), "rdb_age").status is Status.OK


def test_loading_is_critical(redis_factory: RedisFactory) -> None:
    server = redis_factory({"appendonly": "no", "loading-process-events-interval-bytes": "1024"})
    client = plain_client(server)
    assert health_check(server, "loading").status is Status.OK
    pipe = client.pipeline(transaction=False)
    for i in range(20_000):
        pipe.set(f"k{i}", i)
    pipe.execute()
    assert client.save()
    client.close()
    server.kill()
    server.settings["key-load-delay"] = "500"  # µs per key: about 10 s to load

    with ThreadPoolExecutor(max_workers=1) as pool:
        restart = pool.submit(server.start)
        try:
            seen = poll_check(
                server, "loading", {Status.CRITICAL}, "health to catch the server loading"
            )
        finally:
            with plain_client(server) as control:
                control.config_set("key-load-delay", 0)  # CONFIG is allowed while loading
        restart.result(timeout=30)
    assert seen.summary.startswith("loading the dataset:")
    assert health_check(server, "loading").status is Status.OK


# --- replication, keyspace ----------------------------------------------------------------


def test_role_replica_then_master_dies(redis_factory: RedisFactory) -> None:
    master = redis_factory({"repl-diskless-sync-delay": "0"})
    replica = redis_factory({"replicaof": f"127.0.0.1 {master.port}"})
    linked = poll_check(replica, "role", {Status.OK}, "the replica's link to come up")
    assert linked.value == "replica"
    assert f"127.0.0.1:{master.port}" in linked.summary
    assert health_check(master, "role").summary == "master with 1 connected replica(s)"

    master.kill()
    down = poll_check(replica, "role", {Status.CRITICAL}, "the replica to notice its master died")
    assert "master link down" in down.summary


def test_keyspace_counts_per_db(redis_server: RedisServer) -> None:
    assert health_check(redis_server, "keyspace").summary == "empty"
    with plain_client(redis_server) as db0, plain_client(redis_server, db=2) as db2:
        db0.mset({"a": 1, "b": 2, "c": 3})
        db2.set("x", 1)
        db2.set("y", 2, ex=600)
    result = health_check(redis_server, "keyspace")
    assert result.status is Status.OK
    assert "db0=3 keys (0 with TTL)" in result.summary
    assert "db2=2 keys (1 with TTL)" in result.summary
    assert result.metric == 5


# --- the whole report ---------------------------------------------------------------------


def test_report_status_is_the_worst_check(redis_factory: RedisFactory) -> None:
    # Latency is not what this is about: one slow PING on a busy machine must not count.
    relaxed = Band(warning=1000, critical=2000)
    warn_only = redis_factory({"appendonly": "no"})
    report = run_health(config_for(warn_only, latency_ms=relaxed))
    assert [c.name for c in report.checks if c.status is not Status.OK] == ["aof"]
    assert report.status is Status.WARNING
    assert report.to_json()["exit_code"] == 1

    both = redis_factory({"appendonly": "no", "maxmemory-policy": "allkeys-lru"})
    report = run_health(config_for(both, latency_ms=relaxed))
    statuses = {c.name: c.status for c in report.checks}
    assert statuses["aof"] is Status.WARNING
    assert statuses["maxmemory_policy"] is Status.CRITICAL
    assert report.status is Status.CRITICAL
    assert report.status is worst(statuses.values())
    assert report.to_json()["exit_code"] == 2


def test_json_document(redis_server: RedisServer) -> None:
    report: HealthReport = run_health(config_for(redis_server))
    document: dict[str, Any] = json.loads(json.dumps(report.to_json()))
    assert set(document) == HEALTH_JSON_KEYS
    assert document["target"] == f"redis://127.0.0.1:{redis_server.port}/0"
    assert document["status"] == report.status.name
    assert document["exit_code"] == int(report.status)
    assert 0 < document["round_trips"] <= 3
    with plain_client(redis_server) as client:
        version = info(client, "server")["redis_version"]
    assert document["server"]["redis_version"] == version
    assert time.strptime(document["time"], "%Y-%m-%dT%H:%M:%SZ")
    assert [c["name"] for c in document["checks"]] == list(CHECK_NAMES)
    for entry in document["checks"]:
        assert set(entry) == {"name", "status", "value", "threshold", "summary", "hint", "metric"}
        assert entry["status"] in {s.name for s in Status}
