"""The monitor's files in `[runbook] state_dir`, one set per target:

- `monitor-<id>.json`: alert states, the outbox of undelivered notifications and
  the previous queue counts. Written atomically (temp file + rename) after every
  cycle, so `monitor --once` under cron remembers what it already sent. A file that
  cannot be parsed is moved aside (never deleted) and the monitor starts afresh.
- `monitor-history-<id>.jsonl`: one line per cycle (memory, clients, keys), kept for
  `history_days`; `checklist monthly` reads the memory growth trend from it.

When the state file cannot be written (an immutable file, a read-only or full
filesystem), the state goes to a second location instead: `$XDG_RUNTIME_DIR/
redis-runbook/`, else `<temp dir>/redis-runbook-<uid>/` (a directory of ours, mode
0700), under a name keyed by the state dir and the target. Each save numbers the
state (`seq`) and a load takes the higher-numbered of the two files, so a run never
re-sends what an earlier run sent only because the first location refused the write."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis_runbook.aside import move_aside
from redis_runbook.errors import RunbookError
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
    #: Saves so far: of two copies (see the module docstring) the higher one is newer.
    seq: int = 0

    def to_json(self, target: str) -> dict[str, Any]:
        """The file's content."""
        return {
            "version": STATE_VERSION,
            "seq": self.seq,
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
            seq=int(data.get("seq", 0)),
        )


def fallback_root() -> Path | None:
    """The second place for monitor state: a private directory (ours, 0700, not a
    symlink) under $XDG_RUNTIME_DIR or the temp dir; None when neither can be had."""
    uid = os.getuid()
    candidates = []
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        candidates.append(Path(runtime) / "redis-runbook")
    candidates.append(Path(tempfile.gettempdir()) / f"redis-runbook-{uid}")
    for path in candidates:
        with contextlib.suppress(OSError):
            path.mkdir(mode=0o700, exist_ok=True)
        try:
            info = path.lstat()
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode) and info.st_uid == uid and not info.st_mode & 0o077:
            return path
    return None


class StateNotSaved(RunbookError):
    """The monitor state could be written neither to its file nor to the fallback."""


def _problem(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


class StateFiles:
    """The state and history files of one target."""

    def __init__(self, state_dir: Path, target: str) -> None:
        self.target = target
        self.state_dir = state_dir
        ident = target_id(target)
        self.state_path = state_dir / f"monitor-{ident}.json"
        self.history_path = state_dir / f"monitor-history-{ident}.jsonl"
        # Keyed by the state dir too: two configs watching one target stay apart.
        self.fallback_name = f"monitor-{target_id(f'{state_dir.absolute()}|{target}')}.json"

    def fallback_path(self) -> Path | None:
        """Where the state goes when `state_path` cannot be written."""
        root = fallback_root()
        return None if root is None else root / self.fallback_name

    def load(self) -> tuple[MonitorState, Path | None]:
        """The saved state (fresh when there is none; of the file and its fallback
        copy, the newer); a state file that cannot be read as state is moved aside
        and its new path returned."""
        state, aside = self._load_primary()
        fallback = self.fallback_path()
        if fallback is not None:
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError, AttributeError):
                other = MonitorState.from_json(json.loads(fallback.read_text(encoding="utf-8")))
                if other.seq > state.seq:
                    state = other
        return state, aside

    def _load_primary(self) -> tuple[MonitorState, Path | None]:
        try:
            text = self.state_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return MonitorState(), None
        try:
            return MonitorState.from_json(json.loads(text)), None
        except (ValueError, KeyError, TypeError, AttributeError):
            try:
                return MonitorState(), move_aside(self.state_path, "unreadable")
            except OSError:  # a read-only dir: start afresh, the file stays as it is
                return MonitorState(), None

    def save(self, state: MonitorState) -> str | None:
        """Write atomically (a crash leaves the old file or the new one, never half).
        When the state file cannot be written, write the fallback copy and return one
        line saying so; raise StateNotSaved when neither can be written."""
        state.seq += 1
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._write(self.state_path, state)
            return None
        except OSError as exc:
            problem = f"cannot write the monitor state {self.state_path} ({_problem(exc)})"
        fallback = self.fallback_path()
        if fallback is None:
            raise StateNotSaved(f"{problem}; no private runtime or temp dir to keep it in")
        try:
            self._write(fallback, state)
        except OSError as exc:
            raise StateNotSaved(
                f"{problem}; nor its fallback copy {fallback} ({_problem(exc)})"
            ) from None
        return f"{problem}: kept in {fallback} instead"

    def _write(self, path: Path, state: MonitorState) -> None:
        tmp = path.with_suffix(".tmp")
        try:
            with tmp.open("w", encoding="utf-8") as handle:
                json.dump(state.to_json(self.target), handle)
                handle.flush()
                os.fsync(handle.fileno())
            tmp.replace(path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()  # our own temp file, never the state
            raise

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
