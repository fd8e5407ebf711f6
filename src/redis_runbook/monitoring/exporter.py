"""The Prometheus exporter: one read-only scrape of the target per request.

A scrape is a Snapshot (connect, timed PING, one pipeline), the health checks over
it, the queue counts (queue list cached), and the newest backup (listing cached).
One scrape runs at a time, and requests that arrive while it runs share its result
(a single flight): two Prometheus servers scraping at once cost one scrape, never a
pile-up, and however many scrape a dead or hung Redis at once, all get `redis_up 0`
within the connect timeout, with HTTP 200. `redis_up` is 1 only when INFO answered:
an error reply (BUSY, LOADING, MISCONF) is `redis_up 0` plus
`redis_runbook_error_reply{reply="BUSY"} 1`, an observation, never an exception."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse
from wsgiref.types import WSGIApplication as WSGIApp

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, ThreadingWSGIServer
from prometheus_client.registry import Collector

from redis_runbook import __version__
from redis_runbook.backup import make_backend
from redis_runbook.checks import evaluate
from redis_runbook.checks.topology import check_topology
from redis_runbook.config import Config
from redis_runbook.errors import RunbookError
from redis_runbook.monitoring.metrics_redis import redis_metrics
from redis_runbook.monitoring.queue_feed import QueueFeed
from redis_runbook.monitoring.queue_sampler import QueueSampler
from redis_runbook.snapshot import Snapshot, take_snapshot


@dataclass
class BackupSample:
    """What the last backup listing said."""

    up: bool
    archives: int = 0
    newest: float | None = None


class BackupProbe:
    """Lists the backup repository at most once per `cache_seconds`."""

    def __init__(self, config: Config, env: Mapping[str, str] | None, cache_seconds: float) -> None:
        self.config = config
        self.env = env
        self.cache_seconds = cache_seconds
        self._sample: BackupSample | None = None
        self._at = 0.0

    def sample(self) -> BackupSample | None:
        """The cached listing; None when no repository is configured."""
        if not self.config.backup.repository:
            return None
        now = time.monotonic()
        if self._sample is None or now - self._at >= self.cache_seconds:
            try:
                archives = make_backend(self.config.backup, self.env).list()
                newest = max((a.time.timestamp() for a in archives if a.ours), default=None)
                self._sample = BackupSample(True, len(archives), newest)
            except RunbookError:
                self._sample = BackupSample(False)
            self._at = now
        return self._sample


def backup_metrics(sample: BackupSample) -> Iterator[Metric]:
    """`redis_runbook_backup_*`."""
    yield GaugeMetricFamily(
        "redis_runbook_backup_up", "1 when the repository could be listed.", value=int(sample.up)
    )
    if sample.up:
        yield GaugeMetricFamily(
            "redis_runbook_backup_archives", "Archives in the repository.", value=sample.archives
        )
    if sample.newest is not None:
        yield GaugeMetricFamily(
            "redis_runbook_backup_last_timestamp_seconds",
            "Unix time of the newest archive.",
            value=sample.newest,
        )


def error_replies(snapshot: Snapshot) -> list[str]:
    """The codes of the error replies to PING and INFO (`BUSY`, `MISCONF`...), where
    the reply still carries its code."""
    texts = [snapshot.denied.get("INFO all", ""), snapshot.ping_reply or ""]
    words = {text.split()[0] for text in texts if text.strip()}
    return sorted(w for w in words if w.isupper() and w.isalpha() and w != "PONG")


class RunbookCollector(Collector):
    """A prometheus_client collector that scrapes the target when collected; the
    per-queue families are kept apart as text (`queue_text`), see QueueFeed."""

    def __init__(self, config: Config, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.env = env
        exporter = config.exporter
        sampler = QueueSampler(config, env, exporter.discovery_cache_seconds)
        wait = config.target.connect_timeout + config.target.command_timeout
        self.queues = QueueFeed(sampler, exporter.queue_refresh_seconds, wait)
        self.backups = BackupProbe(config, env, exporter.backup_cache_seconds)
        self.scrapes = 0
        self.queue_text = ""

    def collect(self) -> Iterator[Metric]:
        """One scrape (the caller serialises scrapes, see Exporter)."""
        started = time.perf_counter()
        self.scrapes += 1
        snapshot = take_snapshot(self.config.target, self.env)
        up = snapshot.reachable and bool(snapshot.info)
        yield GaugeMetricFamily("redis_up", "1 when the server answered INFO.", up)
        replies = error_replies(snapshot)
        if replies:
            family = GaugeMetricFamily(
                "redis_runbook_error_reply",
                "1 for each error reply (its first word) to this scrape's PING or INFO.",
                labels=["reply"],
            )
            for reply in replies:
                family.add_metric([reply], 1.0)
            yield family
        if snapshot.connect_ms is not None:
            yield GaugeMetricFamily(
                "redis_exporter_last_scrape_connect_time_seconds",
                "Connect and handshake time.",
                value=snapshot.connect_ms / 1000,
            )
        yield from redis_metrics(snapshot)
        yield self._checks(snapshot)
        self.queue_text = ""
        if not up:
            self.queues.invalidate()
        elif self.config.exporter.queue_metrics:
            yield from self._queues()
        backup = self.backups.sample()
        if backup is not None:
            yield from backup_metrics(backup)
        info = GaugeMetricFamily("redis_runbook_build_info", "Version.", labels=["version"])
        info.add_metric([__version__], 1.0)
        yield info
        yield CounterMetricFamily("redis_exporter_scrapes_total", "Scrapes.", value=self.scrapes)
        yield GaugeMetricFamily(
            "redis_exporter_last_scrape_duration_seconds",
            "This scrape's duration.",
            value=time.perf_counter() - started,
        )

    def _queues(self) -> Iterator[Metric]:
        current = self.queues.current()
        yield GaugeMetricFamily(
            "bullmq_up", "1 when the queue counts were read.", value=current.text is not None
        )
        if current.text is None:
            return
        self.queue_text = current.text
        yield GaugeMetricFamily("bullmq_queues", "Queues discovered.", value=current.queues)
        age = current.age(time.time())
        if age is not None:
            yield GaugeMetricFamily(
                "bullmq_counts_age_seconds", "Seconds since the queue counts were read.", age
            )

    def _checks(self, snapshot: Snapshot) -> Metric:
        family = GaugeMetricFamily(
            "redis_runbook_check_status",
            "health checks: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
            labels=["check"],
        )
        results = evaluate(snapshot, self.config)
        if self.config.target.sentinel is not None:  # the topology checks too (~6 ms)
            results += check_topology(self.config, self.env)[1]
        for result in results:
            family.add_metric([result.name], int(result.status))
        return family


@dataclass
class _Flight:
    """One scrape in progress; every request that arrives meanwhile waits for it."""

    done: threading.Event
    body: bytes | None = None
    error: BaseException | None = None


class Exporter:
    """The collector, its registry, and the single flight that bounds scrapes."""

    def __init__(self, config: Config, env: Mapping[str, str] | None = None) -> None:
        self.collector = RunbookCollector(config, env)
        self.registry = CollectorRegistry(auto_describe=False)  # no process metrics
        self.registry.register(self.collector)
        self._mutex = threading.Lock()
        self._flight: _Flight | None = None

    def metrics_text(self) -> bytes:
        """One scrape in the Prometheus text format 0.0.4. Requests that arrive while
        a scrape is in flight share its result instead of queueing behind it: however
        many scrape a hung Redis at once, all answer within one connect timeout."""
        with self._mutex:
            flight = self._flight
            leader = flight is None
            if flight is None:
                flight = self._flight = _Flight(threading.Event())
        if not leader:
            flight.done.wait()
            if flight.body is None:
                raise RuntimeError("the shared scrape failed") from flight.error
            return flight.body
        try:
            core = generate_latest(self.registry)
            flight.body = core + self.collector.queue_text.encode()
            return flight.body
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._mutex:
                self._flight = None
            flight.done.set()


def scrape_text(config: Config, env: Mapping[str, str] | None = None) -> str:
    """One scrape as Prometheus text (what GET /metrics returns)."""
    return Exporter(config, env).metrics_text().decode("utf-8")


LANDING = b"redis-runbook exporter: metrics at /metrics\n"


def make_app(exporter: Exporter) -> WSGIApp:
    """/metrics (the scrape, text format 0.0.4), / and /health (a liveness page); 404
    elsewhere."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            body = exporter.metrics_text()
            start_response("200 OK", [("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)])
            return [body]
        found = path in ("/", "/health")
        start_response(
            "200 OK" if found else "404 Not Found", [("Content-Type", "text/plain; charset=utf-8")]
        )
        return [LANDING if found else b"not found: try /metrics\n"]

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not logged: Prometheus scrapes every few seconds."""


def serve(config: Config, host: str, port: int, env: Mapping[str, str] | None = None) -> WSGIServer:
    """Bind the exporter (raises OSError when the address is taken); the caller runs
    `serve_forever()` and `server_close()`."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]

    class Server(ThreadingWSGIServer):
        address_family = family

    return make_server(
        host, port, make_app(Exporter(config, env)), Server, handler_class=_QuietHandler
    )
