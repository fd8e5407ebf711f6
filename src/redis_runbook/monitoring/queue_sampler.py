"""Queue counts for the exporter and the monitor: the same read-only pipelined
counts as `queues status`, over a queue list that is re-discovered (a SCAN) only
when older than `discovery_cache_seconds`, so the cost of a scrape or a monitor
cycle stays bounded however often it runs."""

from __future__ import annotations

import time
from collections.abc import Mapping

import redis

from redis_runbook.bullmq.counts import QueueCounts, queue_counts
from redis_runbook.bullmq.discovery import discover
from redis_runbook.bullmq.keys import QueueRef
from redis_runbook.bullmq.schedulers import Expected, missing_schedulers
from redis_runbook.config import Config
from redis_runbook.errors import RunbookError
from redis_runbook.target import classify, make_client, target_display


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

    def sample(self, clients: list[dict[str, str]] | None = None) -> list[QueueCounts]:
        """Counts for every known queue (`clients`: a CLIENT LIST read this cycle).
        Raises a RunbookError (and drops the connection, so the next call reconnects)
        when Redis fails."""
        try:
            return queue_counts(self._connection(), self.queues(), clients)
        except redis.RedisError as exc:
            self.close()
            raise classify(exc, target_display(self.config.target)) from None
        except (TypeError, ValueError):
            # An error reply (BUSY, LOADING...) where a count was expected: the
            # pipeline hands replies back unraised. Ask the server what it says now.
            raise self._error_reply() from None

    def missing_schedulers(self, expected: list[Expected]) -> list[Expected]:
        """The expected job schedulers not registered now (one pipelined ZSCORE each);
        a RunbookError when Redis fails, as `sample`."""
        try:
            return missing_schedulers(self._connection(), expected)
        except redis.RedisError as exc:
            self.close()
            raise classify(exc, target_display(self.config.target)) from None

    def _error_reply(self) -> RunbookError:
        where = target_display(self.config.target)
        try:
            self._connection().execute_command("PING")
        except redis.RedisError as exc:
            return classify(exc, where)
        finally:
            self.close()
        return RunbookError(f"{where}: an error reply where a queue count was expected")

    def close(self) -> None:
        """Drop the connection (the queue list is kept)."""
        if self._client is not None:
            self._client.close()
            self._client = None


def _label(value: str) -> str:
    """A label value escaped for the text format (backslash, quote, newline)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


FAMILIES = (
    ("bullmq_queue_jobs", "Jobs by state (the keys of Node's getJobCounts())."),
    ("bullmq_queue_stale_active_jobs", "Active jobs without a live lock."),
    ("bullmq_queue_workers", "Worker connections (CLIENT LIST names)."),
    ("bullmq_queue_paused", "1 when the queue is paused."),
    ("bullmq_queue_last_event_age_seconds", "Seconds since the queue's last event."),
    ("bullmq_queue_schedulers", "Job schedulers and repeatable jobs (members of <queue>:repeat)."),
)


def render_queue_metrics(counts: list[QueueCounts], now: float | None = None) -> str:
    """The per-queue `bullmq_*` families in the Prometheus text format (0.0.4).

    Written directly rather than through prometheus_client: with thousands of queues
    its per-sample label validation costs more than counting the queues does, and
    here every label set is built once per queue."""
    now_ms = (time.time() if now is None else now) * 1000
    lines: dict[str, list[str]] = {name: [] for name, _ in FAMILIES}
    for c in counts:
        labels = f'prefix="{_label(c.queue.prefix)}",queue="{_label(c.queue.name)}"'
        jobs = lines["bullmq_queue_jobs"]
        for state, value in job_states(c).items():
            jobs.append(f'bullmq_queue_jobs{{{labels},state="{state}"}} {value}')
        lines["bullmq_queue_stale_active_jobs"].append(
            f"bullmq_queue_stale_active_jobs{{{labels}}} {stale_active(c)}"
        )
        lines["bullmq_queue_paused"].append(f"bullmq_queue_paused{{{labels}}} {int(c.paused)}")
        lines["bullmq_queue_schedulers"].append(
            f"bullmq_queue_schedulers{{{labels}}} {c.scheduler_count}"
        )
        if c.workers is not None:
            lines["bullmq_queue_workers"].append(f"bullmq_queue_workers{{{labels}}} {c.workers}")
        if c.last_event_ms:
            age = max(0.0, (now_ms - c.last_event_ms) / 1000)
            lines["bullmq_queue_last_event_age_seconds"].append(
                f"bullmq_queue_last_event_age_seconds{{{labels}}} {age:.3f}"
            )
    text = []
    for name, doc in FAMILIES:
        text += [f"# HELP {name} {doc}", f"# TYPE {name} gauge", *lines[name]]
    return "\n".join(text) + "\n"
