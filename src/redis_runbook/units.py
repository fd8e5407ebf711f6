"""Parsing and formatting of Redis-style sizes and durations."""

from __future__ import annotations

import re

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def parse_size(text: str | int) -> int:
    """Parse a memory size the way redis.conf does: `8gb` is 8*1024^3, `100mb`,
    `512k` is 512*1000 (Redis: k=1000, kb=1024), or a plain byte count."""
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"size must not be negative, got {text}")
        return text
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"expected a size like 8gb, 512mb or 1048576, got {text!r}")
    number, unit, suffix = match.groups()
    base = 1024 if suffix.lower().startswith("b") or suffix.lower() == "ib" else 1000
    if not unit:
        base = 1
    return int(float(number) * base ** _POWERS[unit.lower()])


def format_bytes(count: float) -> str:
    """Human size with binary units: 1.5 GiB, 12.0 MiB, 800 B."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def format_size(count: float) -> str:
    """A configured size (a threshold, a limit) as an operator writes it: `64 MiB`,
    `1.5 GiB`, `100 B` — binary units, no needless `.0`."""
    number, unit = format_bytes(count).split(" ")
    return f"{number.removesuffix('.0')} {unit}"


def format_duration(seconds: float) -> str:
    """Compact duration: 850 ms, 42 s, 3 m 05 s, 26 h 10 m, 3 d 4 h."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} m {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} m"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"
