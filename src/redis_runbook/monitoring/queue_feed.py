"""The exporter's queue metrics, refreshed at most once per `queue_refresh_seconds`
whatever the number of scrapers (stale-while-revalidate).

A scrape that finds the rendered text older than the refresh time serves it as it
is and starts one refresh in the background; only the very first scrape waits for
the counts. Two Prometheus servers scraping every 5 s therefore cost Redis one
queue count per refresh period, and a scrape never waits on thousands of queues.
`queue_refresh_seconds = 0` counts inside every scrape instead."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from redis_runbook.errors import RunbookError
from redis_runbook.monitoring.queue_sampler import QueueSampler, render_queue_metrics


@dataclass(frozen=True)
class QueueText:
    """The rendered families, how many queues they cover, and when they were read
    (None while the counts could not be read)."""

    text: str | None
    queues: int
    read_at: float | None

    def age(self, now: float) -> float | None:
        """Seconds since the counts were read."""
        return None if self.read_at is None else max(0.0, now - self.read_at)


class QueueFeed:
    """Counts and renders the queues; see the module docstring for the timing."""

    def __init__(self, sampler: QueueSampler, refresh_seconds: float, wait_seconds: float) -> None:
        self.sampler = sampler
        self.refresh_seconds = refresh_seconds
        self.wait_seconds = wait_seconds
        self._latest: QueueText | None = None
        self._refreshed = 0.0  # monotonic time of the last attempt
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()

    def _refresh(self) -> None:
        try:
            counts = self.sampler.sample()
            latest = QueueText(render_queue_metrics(counts), len(counts), time.time())
        except RunbookError:
            latest = QueueText(None, 0, None)  # absent, never stale numbers as fresh
        with self._lock:
            self._latest = latest

    def current(self) -> QueueText:
        """The freshest rendering, starting a refresh when it is due."""
        if self.refresh_seconds == 0:
            self._refresh()
            assert self._latest is not None
            return self._latest
        with self._lock:
            due = time.monotonic() - self._refreshed >= self.refresh_seconds
            running = self._worker is not None and self._worker.is_alive()
            if (due or self._latest is None) and not running:
                self._refreshed = time.monotonic()
                self._worker = threading.Thread(
                    target=self._refresh, name="queue-refresh", daemon=True
                )
                self._worker.start()
            worker, latest = self._worker, self._latest
        if latest is None and worker is not None:  # the first scrape waits for the counts
            worker.join(self.wait_seconds)
            with self._lock:
                latest = self._latest
        return latest or QueueText(None, 0, None)

    def invalidate(self) -> None:
        """Forget the rendering (Redis stopped answering): nothing stale is served."""
        with self._lock:
            self._latest = None
