"""Where things are, from the one place that knows where tests/support/ is."""

from __future__ import annotations

from pathlib import Path

#: The repository's root (pyproject.toml, deploy/, docs/, src/).
ROOT = Path(__file__).resolve().parents[2]
#: The Node BullMQ v5 project the interop tests drive.
INTEROP_DIR = ROOT / "tests" / "interop"
