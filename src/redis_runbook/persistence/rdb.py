"""RDB files: the header (magic + format version), which Redis release writes and
reads which version, and `redis-check-rdb` run next to the data and parsed.

RDB versions (`src/rdb.h`): 7.0 = 10, 7.2 = 11, 7.4 and 8.0 = 12, 8.6 = 13. A
server refuses a file whose version is above its own (`Can't handle RDB format
version N`), so a dump from 8.x does not load on 7.0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from redis_runbook.persistence.layout import PersistenceError
from redis_runbook.service.base import Launcher, Service, run_command

RDB_MAGIC = b"REDIS"
HEADER_SIZE = 9  # "REDIS" + 4 ASCII digits
RDB_TRAILER = 9  # the EOF opcode 0xFF and an 8-byte CRC64 (zeros when rdbchecksum no)

#: (first release, RDB version it writes), oldest first. 8.2 and 8.4 still write 12
#: (v13 came with 8.6, redis/librdb#93).
RELEASE_RDB_VERSIONS: tuple[tuple[tuple[int, int], int], ...] = (
    ((2, 6), 6),
    ((3, 2), 7),
    ((4, 0), 8),
    ((5, 0), 9),
    ((7, 0), 10),
    ((7, 2), 11),
    ((7, 4), 12),
    ((8, 6), 13),
)

#: RDB version -> the releases that write it, for messages.
RDB_VERSION_WRITERS: dict[int, str] = {
    6: "Redis 2.6-3.0",
    7: "Redis 3.2",
    8: "Redis 4.0",
    9: "Redis 5.0-6.2",
    10: "Redis 7.0",
    11: "Redis 7.2",
    12: "Redis 7.4-8.4",
    13: "Redis 8.6",
}

RdbProblem = Literal["crc", "truncated", "not-rdb", "too-new", "corrupt", "missing"]

NO_REPORT = "no report"
_OFFSET_LINE = re.compile(r"^\[offset (\d+)\] (.*)$")
_VERSION_ERROR = re.compile(r"Can't handle RDB format version (\d+)")
_SERVER_VERSION = re.compile(r"\bv=(\d+\.\d+(?:\.\d+)?)")


def parse_release(version: str) -> tuple[int, int] | None:
    """`7.0.15` to (7, 0); None when it is not a version."""
    match = re.match(r"^\s*(\d+)\.(\d+)", version)
    return (int(match.group(1)), int(match.group(2))) if match else None


def max_rdb_version_of(redis_version: str) -> int | None:
    """The highest RDB version a Redis release can load (= the one it writes):
    `7.0.15` -> 10, `8.4.0` -> 12. None for an unparseable or pre-2.6 version."""
    release = parse_release(redis_version)
    if release is None:
        return None
    best: int | None = None
    for first, rdb_version in RELEASE_RDB_VERSIONS:
        if release >= first:
            best = rdb_version
    return best


def writers_of(rdb_version: int) -> str:
    """Which releases write `rdb_version`, e.g. `Redis 7.4-8.4`."""
    if rdb_version in RDB_VERSION_WRITERS:
        return RDB_VERSION_WRITERS[rdb_version]
    newest = max(RDB_VERSION_WRITERS)
    return f"a Redis newer than {RDB_VERSION_WRITERS[newest]}" if rdb_version > newest else "?"


@dataclass(frozen=True)
class RdbHeader:
    """The first bytes of an RDB file."""

    path: Path
    size: int
    magic_ok: bool
    version: int | None

    @property
    def summary(self) -> str:
        """One line: `REDIS0010 (Redis 7.0), 926 bytes` or why it is not an RDB."""
        if not self.magic_ok:
            return f"not an RDB file (no REDIS signature), {self.size} bytes"
        if self.version is None:
            return f"RDB signature but no readable version, {self.size} bytes"
        return f"RDB version {self.version} ({writers_of(self.version)}), {self.size} bytes"


def read_rdb_header(path: Path) -> RdbHeader:
    """Read the signature and version (bytes 5-8, ASCII digits) of an RDB file, or of
    an AOF whose base is in RDB format. Raises PersistenceError when unreadable."""
    try:
        with path.open("rb") as handle:
            head = handle.read(HEADER_SIZE)
            handle.seek(0, 2)
            size = handle.tell()
    except OSError as exc:
        raise PersistenceError(f"cannot read {path}: {exc.strerror}") from None
    magic_ok = head.startswith(RDB_MAGIC)
    digits = head[len(RDB_MAGIC) : HEADER_SIZE]
    version = int(digits) if magic_ok and len(digits) == 4 and digits.isdigit() else None
    return RdbHeader(path=path, size=size, magic_ok=magic_ok, version=version)


@dataclass(frozen=True)
class RdbCheck:
    """What `redis-check-rdb` (or the RDB part of `redis-check-aof`) said."""

    ok: bool
    returncode: int | None
    file: str | None = None
    offset: int | None = None
    error: str | None = None
    while_doing: str | None = None
    details: tuple[str, ...] = ()
    keys_read: int | None = None
    output: str = field(default="", repr=False)
    #: Whether the file ends with the EOF opcode and its checksum (see with_trailer).
    ends_with_eof: bool | None = None

    @property
    def problem(self) -> RdbProblem | None:
        """The kind of damage, or None when the file is fine."""
        if self.ok:
            return None
        error = self.error or ""
        if error.startswith(NO_REPORT):
            return "missing"
        if "CRC error" in error:
            return "crc"
        if "Unexpected EOF" in error:
            return "truncated"
        if "Wrong signature" in error:
            return "not-rdb"
        if _VERSION_ERROR.search(error):
            return "too-new"
        if self.ends_with_eof is False:
            # Cut inside a blob (a stream's listpack, say), Redis reports the blob, not
            # a short read: the missing trailer tells that the file ends early.
            return "truncated"
        return "corrupt"

    @property
    def format_version(self) -> int | None:
        """N of `Can't handle RDB format version N`."""
        match = _VERSION_ERROR.search(self.error or "")
        return int(match.group(1)) if match else None

    @property
    def summary(self) -> str:
        """One line for reports: the error at its offset and what Redis was doing."""
        if self.ok:
            keys = f", {self.keys_read} keys" if self.keys_read is not None else ""
            return f"RDB looks OK{keys}"
        where = f"[offset {self.offset}] " if self.offset is not None else ""
        doing = f" (while doing: {self.while_doing})" if self.while_doing else ""
        return f"{where}{self.error or 'check failed'}{doing}"


def parse_check_rdb(output: str, returncode: int | None) -> RdbCheck:
    """Parse `redis-check-rdb` output: `\\o/ RDB looks OK! \\o/`, or the block after
    `--- RDB ERROR DETECTED ---` (`[offset N] <error>`, `[additional info] While
    doing: <what>`, `[info] N keys read`)."""
    file = None
    offset = error = doing = None
    details: list[str] = []
    keys_read = None
    in_error = False
    ok = "RDB looks OK!" in output
    for raw in output.splitlines():
        line = raw.strip()
        if line == "--- RDB ERROR DETECTED ---":
            in_error, ok = True, False
            continue
        offset_match = _OFFSET_LINE.match(line)
        if offset_match and offset_match.group(2).startswith("Checking RDB file "):
            file = offset_match.group(2).removeprefix("Checking RDB file ").strip()
            continue
        if in_error and offset_match and error is None:
            offset, error = int(offset_match.group(1)), offset_match.group(2).strip()
        elif line.startswith("[additional info]"):
            text = line.removeprefix("[additional info]").strip()
            if text.startswith("While doing:"):
                doing = text.removeprefix("While doing:").strip()
            else:
                details.append(text)
        elif line.startswith("[info]") and line.endswith("keys read"):
            words = line.split()
            keys_read = int(words[1]) if len(words) > 1 and words[1].isdigit() else None
    if returncode not in (0, None) and error is None:
        ok = False
        error = f"{NO_REPORT} (exit {returncode}): the file is missing or unreadable"
    return RdbCheck(
        ok=ok and (returncode in (0, None)),
        returncode=returncode,
        file=file,
        offset=offset,
        error=error,
        while_doing=doing,
        details=tuple(details),
        keys_read=keys_read,
        output=output,
    )


def ends_with_eof(path: Path) -> bool | None:
    """Whether `path` ends like a whole RDB: the EOF opcode (0xFF) and the 8-byte
    checksum after it. A file cut short ends elsewhere (1 in 256 by chance on 0xFF).
    None when it cannot be read or is too short to tell."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            if handle.tell() < HEADER_SIZE + RDB_TRAILER:
                return None
            handle.seek(-RDB_TRAILER, 2)
            return handle.read(1) == b"\xff"
    except OSError:
        return None


def with_trailer(check: RdbCheck, path: Path) -> RdbCheck:
    """`check` knowing whether the file on the host at `path` ends like a whole RDB."""
    return replace(check, ends_with_eof=ends_with_eof(path))


def check_rdb_file(launcher: Launcher, rdb: Path, timeout: float) -> RdbCheck:
    """`redis-check-rdb` on the host file `rdb`, run as `launcher` runs the Redis
    programs (a compose service's image sees its directory mounted), knowing whether
    the file ends like a whole RDB."""
    done = run_command(launcher(["redis-check-rdb", str(rdb)], [rdb.parent]), timeout=timeout)
    return with_trailer(parse_check_rdb(done.stdout + done.stderr, done.returncode), rdb)


def check_rdb(service: Service, path_in_service: Path, timeout: float = 10.0) -> RdbCheck:
    """Run `redis-check-rdb <file>` where the data lives (read-only). Raises
    ServiceError when the tool cannot run or does not finish within `timeout`."""
    done = service.run_tool(["redis-check-rdb", str(path_in_service)], timeout=timeout)
    return parse_check_rdb(done.stdout + done.stderr, done.returncode)


def installed_redis_version(service: Service, timeout: float = 5.0) -> str | None:
    """The version of the `redis-server` next to the data (`redis-server --version`:
    `Redis server v=7.0.15 ...`), or None when it cannot be told."""
    done = service.run_tool(["redis-server", "--version"], timeout=timeout)
    match = _SERVER_VERSION.search(done.stdout)
    return match.group(1) if match else None
