"""The exact Redis log messages `diagnose` looks for (docs: redis-ops reference §4,
checked against the 7.0.15 and unstable sources), and the matcher.

Log lines look like `pid:R dd Mon yyyy hh:mm:ss.mmm L message`; the prefix is
stripped before matching. Some messages are blocks (FATAL CONFIG FILE ERROR and
FATAL AOF MANIFEST FILE ERROR print the line number, the offending line and the
reason on the lines that follow): those lines are kept as the match's `detail`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: `pid:R dd Mon yyyy hh:mm:ss.mmm L ` (R role M/S/C/X, L level . - * #).
LOG_PREFIX = re.compile(
    r"^\d+:[A-Z] (?P<ts>\d{1,2} \w{3} \d{4} \d{2}:\d{2}:\d{2})\.(?P<ms>\d{3}) [.\-*#] ?"
)
BLOCK_KEYS = ("config-error", "aof-manifest")
BLOCK_LINES = 3


@dataclass(frozen=True)
class LogPattern:
    """A diagnosis and the message texts (substrings) that reveal it."""

    key: str
    needles: tuple[str, ...]
    meaning: str


PATTERNS: tuple[LogPattern, ...] = (
    LogPattern("starting", ("oO0OoO0OoO0Oo Redis is starting",), "the server started"),
    LogPattern("ready", ("Ready to accept connections",), "the server was up"),
    LogPattern(
        "shutdown",
        (
            "Redis is now ready to exit, bye bye",
            "User requested shutdown",
            "Received SIGTERM scheduling shutdown",
            "Received SIGINT scheduling shutdown",
        ),
        "the server was shut down",
    ),
    LogPattern(
        "config-error",
        (
            "*** FATAL CONFIG FILE ERROR",
            # Redis 8 (module configs): unknown directives are listed, then it aborts.
            "Unresolved Configuration(s) Detected",
            "Module Configuration detected without loadmodule directive",
        ),
        "redis.conf has an invalid line",
    ),
    LogPattern("dir-error", ("Can't chdir to",), "the data dir cannot be entered"),
    LogPattern(
        "listen-failed",
        ("Could not create server TCP listening socket", "Failed listening on port"),
        "the port could not be opened",
    ),
    LogPattern(
        "aof-truncated-refused",
        ("Unexpected end of file reading the append only file",),
        "the AOF ends mid-command and aof-load-truncated is no",
    ),
    LogPattern(
        "aof-bad-format",
        ("Bad file format reading the append only file",),
        "the AOF is corrupt in the middle",
    ),
    LogPattern(
        "aof-truncated-repaired",
        ("loaded anyway because aof-load-truncated is enabled",),
        "a truncated AOF was cut and loaded at start: the last writes were lost",
    ),
    LogPattern(
        "aof-truncated-not-last",
        ("Fatal error: the truncated file is not the last file",),
        "an AOF file that is not the last one is truncated",
    ),
    LogPattern(
        "aof-read-error",
        ("Unrecoverable error reading the append only file",),
        "the AOF could not be read (I/O error)",
    ),
    LogPattern(
        "aof-manifest",
        ("*** FATAL AOF MANIFEST FILE ERROR ***", "Fatal error: can't open the AOF manifest"),
        "the AOF manifest is broken",
    ),
    LogPattern(
        "aof-file-missing",
        ("Unable to obtain the AOF file",),
        "a file the AOF manifest names is missing",
    ),
    LogPattern(
        "aof-rdb-base",
        ("Error reading the RDB base file", "Error reading the RDB preamble of the AOF file"),
        "the RDB base of the AOF is corrupt",
    ),
    LogPattern(
        "aof-base-loading",
        ("Reading RDB base file on AOF loading", "RDB is base AOF"),
        "the RDB being loaded is the AOF's base",
    ),
    LogPattern("rdb-crc", ("Wrong RDB checksum",), "the RDB fails its checksum"),
    LogPattern(
        "rdb-short-read", ("Short read or OOM loading DB",), "the RDB ends early (truncated)"
    ),
    LogPattern(
        "rdb-signature", ("Wrong signature trying to load DB from file",), "not an RDB file"
    ),
    LogPattern(
        "rdb-version",
        ("Can't handle RDB format version",),
        "the RDB was written by a newer Redis",
    ),
    LogPattern(
        "rdb-load-failed",
        ("Fatal error loading the DB", "Terminating server after rdb file reading failure"),
        "loading the RDB failed",
    ),
    LogPattern(
        "bgsave-error",
        (
            "Background saving error",
            "Failed opening the temp RDB file",
            "Write error saving DB on disk",
            "Write error while saving DB to the disk",
            "Can't save in background: fork",
        ),
        "an RDB save failed",
    ),
    LogPattern(
        "aof-write-error",
        (
            "Error writing to the AOF file",
            "Short write while writing to the AOF file",
            "Can't recover from AOF write error",
        ),
        "writing the AOF failed",
    ),
    LogPattern(
        "aof-write-recovered",
        ("AOF write error looks solved",),
        "the AOF write error went away",
    ),
    LogPattern("no-space", ("No space left on device",), "the disk is full"),
    LogPattern(
        "aof-rewrite-error",
        ("Background AOF rewrite terminated with error", "Background AOF rewrite has repeatedly"),
        "AOF rewrites fail",
    ),
    LogPattern(
        "slow-disk",
        ("Asynchronous AOF fsync is taking too long",),
        "the disk is slow (AOF fsync takes too long)",
    ),
    LogPattern(
        "allocator-oom",
        ("Out Of Memory allocating", "Redis aborting for OUT OF MEMORY"),
        "Redis aborted: the allocator ran out of memory",
    ),
    LogPattern(
        "crash",
        ("=== REDIS BUG REPORT START", "crashed by signal", "Guru Meditation"),
        "Redis crashed",
    ),
)
PATTERN_KEYS = frozenset(p.key for p in PATTERNS)
START_NEEDLES = ("oO0OoO0OoO0Oo Redis is starting", "*** FATAL CONFIG FILE ERROR")


@dataclass(frozen=True)
class LogMatch:
    """One log line that matched a pattern."""

    key: str
    message: str
    meaning: str
    source: str
    detail: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """The message with its block details, on one line."""
        return " | ".join((self.message, *self.detail)) if self.detail else self.message


def strip_prefix(line: str) -> str:
    """The message of a log line (the line itself when it has no prefix)."""
    return LOG_PREFIX.sub("", line).strip()


def line_time(line: str) -> float | None:
    """The epoch time of a log line (Redis logs local time), or None."""
    match = LOG_PREFIX.match(line)
    if not match:
        return None
    try:
        seconds = time.mktime(time.strptime(match.group("ts"), "%d %b %Y %H:%M:%S"))
    except (ValueError, OverflowError):
        return None
    return seconds + int(match.group("ms")) / 1000


def last_start_index(lines: Sequence[str]) -> int | None:
    """Index of the last line that begins a server start (or a failed one)."""
    for index in range(len(lines) - 1, -1, -1):
        if any(needle in lines[index] for needle in START_NEEDLES):
            return index
    return None


def since_last_start(lines: Sequence[str]) -> list[str]:
    """The lines of the last start attempt (all of them when no start is in view).
    A FATAL CONFIG FILE ERROR block starts with an empty line: it is kept."""
    index = last_start_index(lines)
    return list(lines[index:] if index is not None else lines)


def match_lines(lines: Iterable[str], source: str) -> list[LogMatch]:
    """Every pattern match in `lines`, in order (one line may match several)."""
    messages = [strip_prefix(line) for line in lines]
    matches: list[LogMatch] = []
    for index, message in enumerate(messages):
        if not message:
            continue
        for pattern in PATTERNS:
            if any(needle in message for needle in pattern.needles):
                detail: tuple[str, ...] = ()
                if pattern.key in BLOCK_KEYS:
                    following = [m for m in messages[index + 1 : index + 12] if m]
                    detail = tuple(following[:BLOCK_LINES])
                matches.append(LogMatch(pattern.key, message, pattern.meaning, source, detail))
    return matches
