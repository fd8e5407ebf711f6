"""File-tree snapshots: what a procedure left on disk, compared before and after."""

from __future__ import annotations

from pathlib import Path


def file_bytes(root: Path) -> dict[str, bytes]:
    """Every file under root (relative path) with its content."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def file_sizes(root: Path) -> dict[str, int]:
    """Every file under root with its size (the evidence that nothing was lost)."""
    return {
        str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()
    }
