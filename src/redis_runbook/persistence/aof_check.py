"""`redis-check-aof` run next to the data (never with `--fix` here: fixing is the
recovery procedure's job, after a backup) and its output parsed.

What the tool prints (7.0.15 and unstable share the code):
- `Start checking Multi Part AOF` / `Start checking Old-Style AOF`;
- per file `AOF analyzed: filename=F, size=S, ok_up_to=O, ok_up_to_line=L, diff=D`,
  then `BASE|INCR AOF F is valid|is empty`, or `AOF F is not valid. Use the --fix
  option to try fixing it.` (exit 1) — with `--fix` on a file that is not the last:
  `Failed to truncate AOF F because it is not the last file`;
- the reason before it, `0x<pos>: Expected ...`, or `AOF F format error`;
- an RDB BASE is checked by the redis-check-rdb code: an `--- RDB ERROR DETECTED ---`
  block, then `RDB preamble of AOF file is not sane, aborting.` — or, for some
  damage (a bad LZF string), `Terminating server after rdb file reading failure.`;
- `Cannot open file P: <strerror>, aborting...` for a file the manifest names;
- `*** FATAL AOF MANIFEST FILE ERROR ***` + line + reason for a bad manifest.

Truncated vs corrupt: the tool cuts at the last complete command either way. The
error says which: a short read (`Expected to read N bytes, got M` with M < N), a
line cut by end of file (`Expected \\r\\n, got: 00..`), no reason at all (end of
file at a line boundary) or `Reached EOF before reading EXEC` mean the file ends
early (a crash mid-write); anything else is bytes that are not RESP (corruption).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from redis_runbook.persistence.rdb import RdbCheck, parse_check_rdb
from redis_runbook.service.base import Service

AofProblem = Literal["truncated", "format", "rdb-base", "missing-file", "manifest", "io-error"]

_LOG_PREFIX = re.compile(r"^\d+:[A-Z] \d{1,2} \w{3} \d{4} \d{2}:\d{2}:\d{2}\.\d{3} [.\-*#] ?")
_ANALYZED = re.compile(
    r"AOF analyzed: (?:filename=(?P<file>.*?), )?size=(?P<size>\d+), ok_up_to=(?P<ok>\d+),"
    r"(?: ok_up_to_line=(?P<line>\d+),)? diff=(?P<diff>\d+)"
)
_POSITION = re.compile(r"^0x\s*([0-9a-fA-F]+): (.*)$")
_SHORT_READ = re.compile(r"Expected to read (\d+) bytes, got (\d+) bytes")
_NEWLINE = re.compile(r"Expected \\r\\n, got: ([0-9a-fA-F]{2})([0-9a-fA-F]{2})")
_CANNOT_OPEN = re.compile(r"^Cannot open file (?P<path>.+?): (?P<why>[^:]+?)(?:, aborting\.\.\.)?$")
_FORMAT_ERROR = re.compile(r"^AOF (?P<file>.+) format error$")
_NOT_VALID = re.compile(r"^AOF (?P<file>.+) is not valid\.")
_NOT_LAST = re.compile(r"^Failed to truncate AOF (?P<file>.+) because it is not the last file")
_VALID = re.compile(r"^(?:BASE |INCR )?AOF (?P<file>.+) is (?:valid|empty)$")


def strip_log_prefix(line: str) -> str:
    """`123:M 26 Nov 2026 10:40:28.369 # msg` -> `msg` (other lines unchanged)."""
    return _LOG_PREFIX.sub("", line)


@dataclass(frozen=True)
class AofCheck:
    """The verdict of one `redis-check-aof` run."""

    valid: bool
    returncode: int | None
    problem: AofProblem | None = None
    file: str | None = None
    size: int | None = None
    ok_up_to: int | None = None
    ok_up_to_line: int | None = None
    diff: int | None = None
    not_last: bool = False
    reason: str | None = None
    position: int | None = None
    manifest_line: int | None = None
    rdb: RdbCheck | None = None
    valid_files: tuple[str, ...] = ()
    fixed: bool = False
    output: str = field(default="", repr=False)

    @property
    def summary(self) -> str:
        """One line for reports."""
        if self.valid:
            return "all AOF files and the manifest are valid"
        name = self.file or "the AOF"
        if self.problem == "truncated":
            return (
                f"{name} ends mid-command: {self.diff} byte(s) after offset {self.ok_up_to} "
                f"(of {self.size}) are an incomplete command"
            )
        if self.problem == "format":
            return (
                f"{name} is corrupt at offset {self.ok_up_to} (of {self.size}): "
                f"{self.reason or 'not RESP'}; {self.diff} byte(s) from there on would be cut"
            )
        if self.problem == "rdb-base":
            detail = self.rdb.summary if self.rdb else "RDB check failed"
            return f"the RDB base {name} is not sane: {detail}"
        if self.problem == "missing-file":
            return f"{name} is named in the manifest but missing ({self.reason})"
        if self.problem == "manifest":
            at = f" at line {self.manifest_line}" if self.manifest_line else ""
            return f"the manifest is not valid{at}: {self.reason}"
        return f"{name}: {self.reason or 'redis-check-aof failed'}"


def _classify(reason: str | None) -> AofProblem:
    """truncated (ends early) or format (bytes that are not RESP), from the reason."""
    if reason is None or "Reached EOF before reading EXEC" in reason:
        return "truncated"
    short = _SHORT_READ.search(reason)
    if short:
        return "truncated" if int(short.group(2)) < int(short.group(1)) else "format"
    newline = _NEWLINE.search(reason)
    if newline and "00" in (newline.group(1), newline.group(2)):
        return "truncated"
    return "format"


def _manifest_problem(lines: list[str]) -> tuple[str, int | None]:
    """(reason, line number) from a FATAL AOF MANIFEST FILE ERROR block."""
    number = None
    reason = "manifest error"
    start = next(i for i, ln in enumerate(lines) if "FATAL AOF MANIFEST FILE ERROR" in ln)
    for line in lines[start + 1 :]:
        if line.startswith("Reading the manifest file, at line "):
            tail = line.rsplit(" ", 1)[-1]
            number = int(tail) if tail.isdigit() else None
        elif line and not line.startswith(">>>"):
            reason = line
            break
    return reason, number


def parse_check_aof(output: str, returncode: int | None) -> AofCheck:
    """Parse `redis-check-aof [--fix] <manifest|file>` output (see the module doc)."""
    lines = [strip_log_prefix(raw).strip() for raw in output.splitlines()]
    lines = [line for line in lines if line]
    valid_files = tuple(m.group("file") for ln in lines if (m := _VALID.match(ln)))
    base = AofCheck(False, returncode, valid_files=valid_files, output=output)
    if any("FATAL AOF MANIFEST FILE ERROR" in ln for ln in lines):
        reason, number = _manifest_problem(lines)
        return replace(base, problem="manifest", reason=reason, manifest_line=number)
    for line in lines:
        if line.startswith("Fatal error: can't open the AOF manifest"):
            return replace(base, problem="manifest", reason=line)
        opened = _CANNOT_OPEN.match(line)
        if opened:
            missing = "No such file" in opened.group("why")
            return replace(
                base,
                problem="missing-file" if missing else "io-error",
                file=Path(opened.group("path")).name,
                reason=opened.group("why"),
            )
    rdb_failed = ("RDB preamble of AOF file is not sane", "--- RDB ERROR DETECTED ---")
    if any(ln.startswith(rdb_failed) for ln in lines):
        rdb = parse_check_rdb(output, None)
        name = Path(rdb.file).name if rdb.file else None
        return replace(base, problem="rdb-base", file=name, rdb=rdb)
    return _parse_resp_verdict(base, lines)


def _parse_resp_verdict(base: AofCheck, lines: list[str]) -> AofCheck:
    """The verdict on the RESP part: valid, fixed, or where and why it is bad."""
    analyzed = None
    damaged = None
    reason = None
    position = None
    format_error = not_last = invalid = fixed = False
    for line in lines:
        match = _ANALYZED.search(line)
        if match:
            analyzed = match
            damaged = match if int(match.group("diff")) > 0 else damaged
        positioned = _POSITION.match(line)
        if positioned:
            position, reason = int(positioned.group(1), 16), positioned.group(2)
        if _FORMAT_ERROR.match(line):
            format_error, reason = True, line
        not_last = not_last or bool(_NOT_LAST.match(line))
        invalid = invalid or bool(_NOT_VALID.match(line))
        fixed = fixed or "Successfully truncated AOF" in line
    succeeded = base.returncode in (0, None)
    analyzed = damaged or analyzed
    if analyzed is None:
        if succeeded and (base.valid_files or lines):
            return replace(base, valid=True)
        return replace(base, problem="io-error", reason=lines[-1] if lines else "no output")
    size, ok_up_to, diff = (int(analyzed.group(k)) for k in ("size", "ok", "diff"))
    line_no = analyzed.group("line")
    measured = replace(
        base,
        file=analyzed.group("file"),
        size=size,
        ok_up_to=ok_up_to,
        ok_up_to_line=int(line_no) if line_no else None,
        diff=diff,
        fixed=fixed,
    )
    if not (invalid or not_last or not succeeded):
        return replace(measured, valid=True)
    problem: AofProblem = "format" if format_error else _classify(reason)
    return replace(measured, problem=problem, not_last=not_last, reason=reason, position=position)


def check_aof(service: Service, path_in_service: Path, timeout: float = 10.0) -> AofCheck:
    """Run `redis-check-aof <manifest|file>` where the data lives. Read-only: no
    `--fix`, stdin closed. Raises ServiceError when the tool cannot run in time."""
    done = service.run_tool(["redis-check-aof", str(path_in_service)], timeout=timeout)
    return parse_check_aof(done.stdout + done.stderr, done.returncode)
