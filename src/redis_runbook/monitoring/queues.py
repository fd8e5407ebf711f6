"""Queue counts for the exporter and the monitor: the same read-only pipelined
counts as `queues status`, over a queue list that is re-discovered (a SCAN) only
when older than `discovery_cache_seconds`, so the cost of a scrape or a monitor
cycle stays bounded however often it runs."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping

import redis
from prometheus_client.core import GaugeMetricFamily, Metric

from redis_runbook.bullmq.counts import QueueCounts, queue_counts
from redis_runbook.bullmq.discovery import discover
from redis_runbook.bullmq.keys import QueueRef
from redis_runbook.config import Config
from redis_runbook.target import classify, display_url, make_client

QUEUE_LABELS = ["prefix", "queue"]


def stale_active(counts: QueueCounts) -> int:
    """Active jobs no worker can be shown to own: no lock, a lock without TTL, or no
    job hash (what `queues recover-stale` reports)."""
    return counts.active.stale + counts.active.immortal + counts.active.orphan


def job_states(counts: QueueCounts) -> dict[str, int]:
    """Jobs by state, keyed like Node's `getJobCounts()` for a v5 queue."""
    return {
        "waiting": counts.wait,
        "paused": counts.paused_list,
        "prioritized": counts.prioritized,
        "active": counts.active.total,
        "delayed": counts.delayed,
        "waiting-children": counts.waiting_children,
        "completed": counts.completed,
        "failed": counts.failed,
    }


class QueueSampler:
    """Counts every queue of the target over one long-lived connection (bytes, since
    key names need not be UTF-8); the queue list is cached."""

    def __init__(
        self, config: Config, env: Mapping[str, str] | None = None, cache_seconds: float = 300.0
    ) -> None:
        self.config = config
        self.env = env
        self.cache_seconds = cache_seconds
        self._client: redis.Redis | None = None
        self._queues: list[QueueRef] = []
        self._discovered_at: float | None = None

    def _connection(self) -> redis.Redis:
        if self._client is None:
            self._client = make_client(self.config.target, self.env, decode=False)
        return self._client

    def queues(self) -> list[QueueRef]:
        """The cached queue list, discovered again when older than the cache time."""
        now = time.monotonic()
        if self._discovered_at is None or now - self._discovered_at >= self.cache_seconds:
            bullmq = self.config.bullmq
            self._queues = discover(self._connection(), bullmq.prefixes, bullmq.layout).queues
            self._discovered_at = now
        return self._queues

    def sample(self) -> list[QueueCounts]:
        """Counts for every known queue. Raises a RunbookError (and drops the connection,
        so the next call reconnects) when Redis fails."""
        try:
            return queue_counts(self._connection(), self.queues())
        except redis.RedisError as exc:
            self.close()
            raise classify(exc, display_url(self.config.target.url)) from None

    def close(self) -> None:
        """Drop the connection (the queue list is kept)."""
        if self._client is not None:
            self._client.close()
            self._client = None


def queue_metrics(counts: list[QueueCounts]) -> Iterator[Metric]:
    """The `bullmq_*` families (docs/monitoring.md)."""
    now_ms = time.time() * 1000
    yield GaugeMetricFamily("bullmq_queues", "Queues discovered.", value=len(counts))
    jobs = GaugeMetricFamily("bullmq_queue_jobs", "Jobs by state.", labels=[*QUEUE_LABELS, "state"])
    stale = GaugeMetricFamily(
        "bullmq_queue_stale_active_jobs", "Active jobs without a live lock.", labels=QUEUE_LABELS
    )
    workers = GaugeMetricFamily("bullmq_queue_workers", "Worker connections.", labels=QUEUE_LABELS)
    paused = GaugeMetricFamily("bullmq_queue_paused", "1 when paused.", labels=QUEUE_LABELS)
    event_age = GaugeMetricFamily(
        "bullmq_queue_last_event_age_seconds", "Seconds since the last event.", labels=QUEUE_LABELS
    )
    for c in counts:
        labels = [c.queue.prefix, c.queue.name]
        for state, value in job_states(c).items():
            jobs.add_metric([*labels, state], value)
        stale.add_metric(labels, stale_active(c))
        paused.add_metric(labels, 1.0 if c.paused else 0.0)
        if c.workers is not None:
            workers.add_metric(labels, c.workers)
        if c.last_event_ms:
            event_age.add_metric(labels, max(0.0, (now_ms - c.last_event_ms) / 1000))
    yield from (jobs, stale, workers, paused, event_age)
