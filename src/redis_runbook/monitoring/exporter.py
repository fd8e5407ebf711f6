"""The Prometheus exporter: one read-only scrape of the target per request.

A scrape is a Snapshot (connect, timed PING, one pipeline), the health checks over
it, the queue counts (queue list cached), and the newest backup (listing cached).
Scrapes are serialised by a lock: two Prometheus servers scraping at once cost two
scrapes in a row, never a pile-up. A dead Redis gives `redis_up 0` within the
connect timeout, with HTTP 200."""

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

from prometheus_client import CollectorRegistry, generate_latest, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

from redis_runbook import __version__
from redis_runbook.backup import make_backend
from redis_runbook.checks import evaluate
from redis_runbook.config import Config
from redis_runbook.errors import RunbookError
from redis_runbook.monitoring.metrics_redis import redis_metrics
from redis_runbook.monitoring.queues import QueueSampler, queue_metrics
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
                newest = max((a.time.timestamp() for a in archives), default=None)
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


class RunbookCollector(Collector):
    """A prometheus_client collector that scrapes the target when collected."""

    def __init__(self, config: Config, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.env = env
        self.queues = QueueSampler(config, env, config.exporter.discovery_cache_seconds)
        self.backups = BackupProbe(config, env, config.exporter.backup_cache_seconds)
        self.scrapes = 0
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        """One scrape (serialised)."""
        with self._lock:
            yield from self._scrape()

    def _scrape(self) -> Iterator[Metric]:
        started = time.perf_counter()
        self.scrapes += 1
        snapshot = take_snapshot(self.config.target, self.env)
        metrics: list[Metric] = [
            GaugeMetricFamily("redis_up", "1 when the server answered.", value=snapshot.reachable)
        ]
        if snapshot.connect_ms is not None:
            metrics.append(
                GaugeMetricFamily(
                    "redis_exporter_last_scrape_connect_time_seconds",
                    "Connect and handshake time.",
                    value=snapshot.connect_ms / 1000,
                )
            )
        metrics.extend(redis_metrics(snapshot))
        metrics.append(self._checks(snapshot))
        if snapshot.reachable and self.config.exporter.queue_metrics:
            try:
                metrics.extend(queue_metrics(self.queues.sample()))
                queues_up = 1
            except RunbookError:
                queues_up = 0  # the bullmq_queue_* families are absent this time
            metrics.append(
                GaugeMetricFamily("bullmq_up", "1 when the queue counts were read.", queues_up)
            )
        backup = self.backups.sample()
        if backup is not None:
            metrics.extend(backup_metrics(backup))
        info = GaugeMetricFamily("redis_runbook_build_info", "Version.", labels=["version"])
        info.add_metric([__version__], 1.0)
        metrics.append(info)
        metrics.append(
            CounterMetricFamily("redis_exporter_scrapes_total", "Scrapes.", value=self.scrapes)
        )
        metrics.append(
            GaugeMetricFamily(
                "redis_exporter_last_scrape_duration_seconds",
                "This scrape's duration.",
                value=time.perf_counter() - started,
            )
        )
        yield from metrics

    def _checks(self, snapshot: Snapshot) -> Metric:
        family = GaugeMetricFamily(
            "redis_runbook_check_status",
            "health checks: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
            labels=["check"],
        )
        for result in evaluate(snapshot, self.config):
            family.add_metric([result.name], int(result.status))
        return family

    def close(self) -> None:
        """Drop the queue connection."""
        self.queues.close()


def make_registry(config: Config, env: Mapping[str, str] | None = None) -> CollectorRegistry:
    """A registry holding only our collector (no process/platform metrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunbookCollector(config, env))
    return registry


def scrape_text(config: Config, env: Mapping[str, str] | None = None) -> str:
    """One scrape as Prometheus text (what GET /metrics returns)."""
    return generate_latest(make_registry(config, env)).decode("utf-8")


LANDING = b"redis-runbook exporter: metrics at /metrics\n"


def make_app(registry: CollectorRegistry) -> WSGIApp:
    """/metrics (the scrape), / and /health (a liveness page); 404 elsewhere."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            body: Iterable[bytes] = metrics(environ, start_response)
            return body
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
        host, port, make_app(make_registry(config, env)), Server, handler_class=_QuietHandler
    )
