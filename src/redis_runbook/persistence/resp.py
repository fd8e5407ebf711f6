"""Read the commands in a stretch of AOF bytes, to say exactly what a repair cut.

The stretch starts at the first bad byte, so it may open with garbage or a
half-written command: parsing resynchronises on the next `*<n>\\r\\n` array header."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_ARRAY = re.compile(rb"\*(\d+)\r\n")
_BULK = re.compile(rb"\$(\d+)\r\n")
SHOWN_ARG_BYTES = 60


@dataclass
class CutCommands:
    """What a byte range of an AOF held."""

    complete: int = 0
    incomplete: int = 0
    garbage_bytes: int = 0
    samples: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        """`3 complete command(s) (SET cache:1, ...), 1 cut short, 12 byte(s) of garbage`."""
        parts = [f"{self.complete} complete command(s)"]
        if self.samples:
            parts[0] += " (" + ", ".join(self.samples) + ")"
        if self.incomplete:
            parts.append(f"{self.incomplete} cut short")
        if self.garbage_bytes:
            parts.append(f"{self.garbage_bytes} byte(s) that are not commands")
        return ", ".join(parts)


def _show(args: list[bytes]) -> str:
    words = [a.decode("utf-8", errors="replace") for a in args[:2]]
    text = " ".join(words)
    return text if len(text) <= SHOWN_ARG_BYTES else text[:SHOWN_ARG_BYTES] + "…"


def _command_at(data: bytes, pos: int) -> tuple[list[bytes], int] | None:
    """The command whose array header starts at `pos` and the position after it;
    None when it is cut short or malformed."""
    header = _ARRAY.match(data, pos)
    if not header:
        return None
    pos = header.end()
    args = []
    for _ in range(int(header.group(1))):
        bulk = _BULK.match(data, pos)
        if not bulk:
            return None
        start = bulk.end()
        end = start + int(bulk.group(1))
        if data[end : end + 2] != b"\r\n":
            return None
        args.append(data[start:end])
        pos = end + 2
    return args, pos


def read_commands(data: bytes, samples: int = 5) -> CutCommands:
    """Count the complete commands in `data` (skipping what does not parse) and keep
    the first `samples` as `NAME first-arg`."""
    found = CutCommands()
    pos = 0
    while pos < len(data):
        parsed = _command_at(data, pos)
        if parsed is not None:
            args, pos = parsed
            found.complete += 1
            if len(found.samples) < samples and args:
                found.samples.append(_show(args))
            continue
        following = _ARRAY.search(data, pos + 1)
        if data[pos : pos + 1] == b"*":
            found.incomplete += 1
        else:
            found.garbage_bytes += (following.start() if following else len(data)) - pos
        if following is None:
            break
        pos = following.start()
    return found
