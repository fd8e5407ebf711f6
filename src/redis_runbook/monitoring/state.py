"""The monitor's files in `[runbook] state_dir`, one set per target:

- `monitor-<id>.json`: alert states, the outbox of undelivered notifications and
  the previous queue counts. Written atomically (temp file + rename) after every
  cycle, so `monitor --once` under cron remembers what it already sent. A file that
  cannot be parsed is moved aside (never deleted) and the monitor starts afresh.
- `monitor-history-<id>.jsonl`: one line per cycle (memory, clients, keys), kept for
  `history_days`; `checklist monthly` reads the memory growth trend from it."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis_runbook.fsops import move_aside
from redis_runbook.monitoring.alerting import AlertState

STATE_VERSION = 1
HISTORY_TRIM_BYTES = 2 * 1024 * 1024


def target_id(target: str) -> str:
    """A short stable id for a target's files (its redacted URL hashed)."""
    return hashlib.sha256(target.encode()).hexdigest()[:12]


@dataclass
class MonitorState:
    """Everything one target's monitor keeps between cycles."""

    alerts: dict[str, AlertState] = field(default_factory=dict)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    queues: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self, target: str) -> dict[str, Any]:
        """The file's content."""
        return {
            "version": STATE_VERSION,
            "target": target,
            "alerts": {k: s.to_json() for k, s in self.alerts.items()},
            "outbox": self.outbox,
            "queues": self.queues,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MonitorState:
        """Parse the file's content (KeyError/TypeError/ValueError when malformed)."""
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"unknown state version {data.get('version')!r}")
        return cls(
            alerts={k: AlertState.from_json(v) for k, v in data["alerts"].items()},
            outbox=list(data["outbox"]),
            queues=dict(data["queues"]),
        )


class StateFiles:
    """The state and history files of one target."""

    def __init__(self, state_dir: Path, target: str) -> None:
        self.target = target
        self.state_dir = state_dir
        ident = target_id(target)
        self.state_path = state_dir / f"monitor-{ident}.json"
        self.history_path = state_dir / f"monitor-history-{ident}.jsonl"

    def load(self) -> tuple[MonitorState, Path | None]:
        """The saved state (fresh when there is none); a file that cannot be read as
        state is moved aside and its new path returned."""
        try:
            text = self.state_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return MonitorState(), None
        try:
            return MonitorState.from_json(json.loads(text)), None
        except (ValueError, KeyError, TypeError, AttributeError):
            return MonitorState(), move_aside(self.state_path, "unreadable")

    def save(self, state: MonitorState) -> None:
        """Write atomically (a crash leaves the old file or the new one, never half)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            json.dump(state.to_json(self.target), handle)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(self.state_path)

    def append_history(self, row: Mapping[str, Any], keep_days: int) -> None:
        """Add one line; when the file passes 2 MiB, drop lines older than keep_days."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self.history_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row, separators=(",", ":")) + "\n")
        if self.history_path.stat().st_size > HISTORY_TRIM_BYTES:
            cutoff = time.time() - keep_days * 86_400
            kept = [r for r in self.history() if r.get("t", 0) >= cutoff]
            tmp = self.history_path.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in kept))
            tmp.replace(self.history_path)

    def history(self) -> Iterator[dict[str, Any]]:
        """Every history row, oldest first (lines that do not parse are skipped)."""
        try:
            handle = self.history_path.open(encoding="utf-8")
        except FileNotFoundError:
            return
        with handle:
            for line in handle:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict):
                    yield row
