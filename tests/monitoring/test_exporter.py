"""The exporter against real servers: the text parses with the Prometheus parser,
names match oliver006/redis_exporter's, values match what Redis itself says, a
read-only ACL user is enough, a dead Redis is `redis_up 0` with HTTP 200, and the
listen address is refused when it is not loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from redis_runbook.checks import CHECK_NAMES
from redis_runbook.config import Config, load_config
from redis_runbook.config.monitoring import ExporterConfig
from redis_runbook.errors import RunbookError
from redis_runbook.lab.faults import FaultOptions, inject
from redis_runbook.lab.seed import SeedPlan, seed
from redis_runbook.lab.server import RedisServer
from redis_runbook.monitoring.exporter import Exporter, scrape_text, serve
from redis_runbook.monitoring.queue_sampler import QueueSampler
from redis_runbook.ports import free_port
from tests.support.backup import backup_env, create
from tests.support.cli import run_cli
from tests.support.lab import Lab
from tests.support.servers import RedisFactory, plain_client
from tests.support.waiting import wait_until

#: The core names the issue lists, plus the rest of docs/monitoring.md's core table
#: that every server reports.
CORE = {
    "redis_up",
    "redis_memory_used_bytes",
    "redis_memory_max_bytes",
    "redis_evicted_keys_total",
    "redis_connected_clients",
    "redis_rdb_last_bgsave_status",
    "redis_aof_last_write_status",
    "redis_mem_fragmentation_ratio",
    "redis_db_keys",
    "redis_db_keys_expiring",
    "redis_instance_info",
    "redis_uptime_in_seconds",
    "redis_blocked_clients",
    "redis_rejected_connections_total",
    "redis_errors_total",
    "redis_config_maxmemory",
    "redis_slowlog_length",
    "redis_exporter_last_scrape_duration_seconds",
    "redis_exporter_scrapes_total",
    "redis_runbook_check_status",
}
BULLMQ = {
    "bullmq_up",
    "bullmq_queues",
    "bullmq_queue_jobs",
    "bullmq_queue_stale_active_jobs",
    "bullmq_queue_workers",
    "bullmq_queue_paused",
}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample as {(name, sorted labels): value}, through Prometheus' own parser."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_scrape_names_and_values_match_redis_and_bullmq(redis_server: RedisServer) -> None:
    seed(redis_server.target(), SeedPlan())
    config = Config(target=redis_server.target())
    client = plain_client(redis_server)
    keys_before = client.dbsize()  # only TTLs change the keyspace now (no workers)
    samples = parse(scrape_text(config, env={}))
    keys_after = client.dbsize()
    assert names(samples) >= CORE | BULLMQ
    assert value(samples, "redis_up") == 1
    assert value(samples, "redis_memory_max_bytes") == int(
        client.config_get("maxmemory")["maxmemory"]
    )
    assert keys_after <= value(samples, "redis_db_keys", db="db0") <= keys_before
    assert value(samples, "redis_rdb_last_bgsave_status") == 1
    info = client.info("server")
    instance = next(labels for name, labels in samples if name == "redis_instance_info")
    assert dict(instance)["redis_version"] == info["redis_version"]
    assert dict(instance)["maxmemory_policy"] == "noeviction"
    q = {"prefix": "bull", "queue": "enrich-batch"}
    assert value(samples, "bullmq_queue_jobs", **q, state="waiting") == client.llen(
        "bull:enrich-batch:wait"
    )
    assert value(samples, "bullmq_queue_jobs", **q, state="delayed") == client.zcard(
        "bull:enrich-batch:delayed"
    )
    assert value(samples, "bullmq_queue_jobs", **q, state="active") == client.llen(
        "bull:enrich-batch:active"
    )
    assert value(samples, "bullmq_queue_stale_active_jobs", **q) >= 1  # the seed's dead worker
    nurturing = {"prefix": "bull", "queue": "nurturing"}
    assert value(samples, "bullmq_queue_paused", **nurturing) == 1
    assert value(samples, "bullmq_queue_jobs", **nurturing, state="paused") == client.llen(
        "bull:nurturing:paused"
    )
    checks = {
        dict(labels)["check"] for name, labels in samples if name == "redis_runbook_check_status"
    }
    assert checks == set(CHECK_NAMES)


def test_a_read_only_acl_user_is_enough(redis_factory: RedisFactory, tmp_path: Path) -> None:
    """Every command a scrape sends is allowed to a user without @write or scripts."""
    secret = tmp_path / "metrics.pass"
    secret.write_text("metrics-pw\n")
    server = redis_factory()
    admin = plain_client(server)
    rules = "~* resetchannels -@all +@read +ping +info +config|get +slowlog|len "
    rules += "+latency|latest +client|list +client|setname +client|no-evict +select"
    try:  # CLIENT SETINFO exists from Redis 7.2
        admin.execute_command("ACL", "SETUSER", "metrics", *f"{rules} +client|setinfo".split())
    except redis.ResponseError:
        admin.execute_command("ACL", "SETUSER", "metrics", *rules.split())
    admin.execute_command("ACL", "SETUSER", "metrics", "on", ">metrics-pw")
    seed(server.target(), SeedPlan())  # as the default user
    metrics = server.target().model_copy(update={"username": "metrics", "password_file": secret})
    samples = parse(scrape_text(Config(target=metrics), env={}))
    assert value(samples, "redis_up") == 1
    assert value(samples, "bullmq_up") == 1
    assert value(samples, "bullmq_queues") == 3
    denied = {k: v for k, v in admin.info("errorstats").items() if "NOPERM" in k}
    assert denied == {}


def test_a_dead_redis_is_redis_up_0_not_an_error(redis_server: RedisServer) -> None:
    config = Config(target=redis_server.target())
    assert value(parse(scrape_text(config, env={})), "redis_up") == 1
    redis_server.kill(signal.SIGKILL)
    samples = parse(scrape_text(config, env={}))  # a scrape, not an exception
    assert value(samples, "redis_up") == 0
    assert not names(samples) & {"bullmq_up", "redis_memory_used_bytes"}
    assert value(samples, "redis_runbook_check_status", check="connection") == 2


def test_backup_age_comes_from_the_repository(lab_env: Lab, tmp_path: Path) -> None:
    repo = tmp_path / "archives"
    repo.mkdir()
    env = backup_env(lab_env, tmp_path, "directory", repo)
    before = time.time()
    create(env)
    samples = parse(scrape_text(load_config(env=env).config, env=env))
    assert value(samples, "redis_runbook_backup_up") == 1
    assert value(samples, "redis_runbook_backup_archives") == 1
    assert (
        before - 2 <= value(samples, "redis_runbook_backup_last_timestamp_seconds") <= time.time()
    )
    env["REDIS_RUNBOOK_BACKUP__REPOSITORY"] = str(tmp_path / "missing")
    samples = parse(scrape_text(load_config(env=env).config, env=env))
    assert value(samples, "redis_runbook_backup_up") == 0


@pytest.fixture
def exporter(redis_server: RedisServer) -> Iterator[str]:
    """The CLI's exporter as a process on a free loopback port; yields its base URL."""
    port = free_port()
    env = {"REDIS_RUNBOOK_TARGET__URL": redis_server.target().url}
    process = subprocess.Popen(
        [sys.executable, "-m", "redis_runbook", "exporter", "--listen", f"127.0.0.1:{port}"],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("REDIS_RUNBOOK_")}, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with urllib.request.urlopen(base + "/health", timeout=2):  # noqa: S310
                return True
        except OSError:
            return process.poll() is not None  # it exited: let the test see why

    wait_until(up, what="the exporter to listen", timeout=20)
    assert process.poll() is None, process.stderr.read() if process.stderr else ""
    yield base
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310
            return answer.status, answer.headers["Content-Type"], answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_the_http_endpoint(exporter: str, redis_server: RedisServer) -> None:
    status, content_type, body = get(exporter + "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    first = value(parse(body), "redis_exporter_scrapes_total")
    assert value(parse(get(exporter + "/metrics")[2]), "redis_exporter_scrapes_total") == first + 1
    assert get(exporter + "/nope")[0] == 404
    redis_server.kill(signal.SIGKILL)
    status, _, body = get(exporter + "/metrics")
    assert status == 200
    assert value(parse(body), "redis_up") == 0


def test_a_public_listen_address_needs_listen_public(redis_server: RedisServer) -> None:
    env = {"REDIS_RUNBOOK_TARGET__URL": redis_server.target().url}
    done = run_cli("exporter", "--listen", f"0.0.0.0:{free_port()}", env=env)
    assert done.returncode == 3
    assert "not a loopback address" in done.stderr
    assert "HINT: add --listen-public" in done.stderr
    bad = run_cli("exporter", "--listen", "localhost", env=env)
    assert bad.returncode == 2
    assert "expected HOST:PORT" in bad.stderr


def test_queue_counts_refresh_at_most_once_per_period(redis_server: RedisServer) -> None:
    """Scrapes within the refresh period reuse the counts; with 0 every scrape counts."""
    client = plain_client(redis_server)
    # A queue whose name needs escaping in the text format: quote and backslash.
    name = 'odd"name\\x'
    client.hset(f"bull:{name}:meta", "opts.maxLenEvents", "10000")
    client.rpush(f"bull:{name}:wait", "1")
    cached = Exporter(Config(target=redis_server.target(), exporter=ExporterConfig()), env={})
    first = parse(cached.metrics_text().decode())
    assert value(first, "bullmq_queue_jobs", prefix="bull", queue=name, state="waiting") == 1
    client.rpush(f"bull:{name}:wait", "2")
    again = parse(cached.metrics_text().decode())  # within 15 s: the same counts
    assert value(again, "bullmq_queue_jobs", prefix="bull", queue=name, state="waiting") == 1
    assert value(again, "bullmq_counts_age_seconds") >= 0
    every = Config(target=redis_server.target(), exporter=ExporterConfig(queue_refresh_seconds=0))
    fresh = parse(scrape_text(every, env={}))
    assert value(fresh, "bullmq_queue_jobs", prefix="bull", queue=name, state="waiting") == 2


# --- issue 12 item 11: a hung Redis, a busy script ------------------------------------------


def test_concurrent_scrapes_of_a_hung_redis_share_one_probe(redis_server: RedisServer) -> None:
    """Redis stopped (SIGSTOP: it accepts connections, never answers): 50 scrapes at
    once all answer `redis_up 0` before a deadline of a few connect timeouts (scrapes
    serialised one after another took 50 of them)."""
    connect_timeout = 2.0
    target = redis_server.target().model_copy(update={"connect_timeout": connect_timeout})
    server = serve(Config(target=target), "127.0.0.1", 0, env={})
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    deadline = 8 * connect_timeout  # one probe takes one connect timeout
    results: list[float | str] = []

    def scrape() -> None:
        try:
            with urllib.request.urlopen(url, timeout=deadline) as answer:
                results.append(value(parse(answer.read().decode()), "redis_up"))
        except OSError as exc:
            results.append(f"{type(exc).__name__}: {exc}")

    try:
        assert value(parse(get(url)[2]), "redis_up") == 1
        pid = redis_server.pid()
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            scrapers = [threading.Thread(target=scrape) for _ in range(50)]
            for thread in scrapers:
                thread.start()
            for thread in scrapers:
                thread.join()
        finally:
            os.kill(pid, signal.SIGCONT)
    finally:
        server.shutdown()
        server.server_close()
    assert results == [0.0] * 50, sorted(map(str, results))


def test_a_busy_script_is_redis_up_0_and_never_a_traceback(
    redis_factory: RedisFactory,
) -> None:
    """INFO answered BUSY: that is `redis_up 0` (and the reply named), not `redis_up 1`;
    counting queues meanwhile is a typed error, not a TypeError."""
    server = redis_factory({"busy-reply-threshold": "100"})
    client = plain_client(server)
    client.hset("bull:mail:meta", "opts.maxLenEvents", "10000")
    client.rpush("bull:mail:wait", "1")
    config = Config(target=server.target(), exporter=ExporterConfig(queue_refresh_seconds=0))
    exporter = Exporter(config, env={})
    sampler = QueueSampler(config, env={})
    assert value(parse(exporter.metrics_text().decode()), "bullmq_up") == 1
    assert [c.wait for c in sampler.sample()] == [1]  # the queue list is now cached
    injected = inject("slow-script", server, FaultOptions(seconds=30))
    try:
        samples = parse(exporter.metrics_text().decode())
        with pytest.raises(RunbookError, match="BUSY"):
            sampler.sample()
    finally:
        injected.release()
        sampler.close()
    assert value(samples, "redis_up") == 0
    assert value(samples, "redis_runbook_error_reply", reply="BUSY") == 1
    assert "bullmq_queue_jobs" not in names(samples)
    # One verdict, as for a server that is down: BUSY serves no client (SCRIPT KILL).
    assert value(samples, "redis_runbook_check_status", check="connection") == 2
    assert ("redis_runbook_check_status", (("check", "memory"),)) not in samples
    after = parse(exporter.metrics_text().decode())
    assert value(after, "redis_up") == 1
    assert ("redis_runbook_error_reply", (("reply", "BUSY"),)) not in after
