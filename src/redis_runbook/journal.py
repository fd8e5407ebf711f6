"""The journal: one JSON line per action (time, target, procedure, step, outcome,
message, figures) — the incident's timeline. Secrets are never written: URLs are
redacted and callers pass no secret values."""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis_runbook import redaction
from redis_runbook.errors import RunbookError

JOURNAL_NAME = "journal.jsonl"


def redact(text: str) -> str:
    """Replace the password of any URL (`scheme://user:password@`) in `text` with ***."""
    return redaction.redact(text)


@dataclass(frozen=True)
class Journal:
    """Append-only JSON-lines file under the state directory."""

    path: Path

    @classmethod
    def in_dir(cls, state_dir: Path) -> Journal:
        """The journal of a state directory."""
        return cls(state_dir / JOURNAL_NAME)

    def record(
        self,
        *,
        target: str,
        procedure: str,
        step: str,
        outcome: str,
        message: str = "",
        figures: dict[str, Any] | None = None,
    ) -> None:
        """Append one entry and fsync it: the journal must survive the crash it
        documents."""
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
            + f".{int(time.time() * 1000) % 1000:03d}Z",
            "target": redact(target),
            "procedure": procedure,
            "step": step,
            "outcome": outcome,
            "message": redact(message),
            "figures": figures or {},
            "pid": os.getpid(),
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry, default=str) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise RunbookError(
                f"cannot write the journal {self.path}: {exc.strerror}",
                "set [runbook] state_dir to a writable directory",
            ) from None

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every entry, oldest first (unparseable lines are skipped)."""
        try:
            handle = self.path.open(encoding="utf-8")
        except FileNotFoundError:
            return
        with handle:
            for line in handle:
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue

    def tail(self, count: int) -> list[dict[str, Any]]:
        """The last `count` entries (unparseable lines are skipped)."""
        try:
            with self.path.open(encoding="utf-8") as handle:
                lines = deque(handle, maxlen=count)
        except FileNotFoundError:
            return []
        entries = []
        for line in lines:
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return entries
