"""Where a Redis server keeps its data files, read from its redis.conf (or the
defaults Redis itself uses): `dir`, `dbfilename`, `appendonly`, `appenddirname`,
`appendfilename`, `aof-load-truncated`.

Only the handful of directives that locate the files are read; `include` files are
followed (depth-limited), and the last occurrence of a directive wins, like Redis.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from redis_runbook.errors import RunbookError

#: Redis' own defaults for the directives we read (7.0+).
REDIS_DEFAULTS: dict[str, str] = {
    "appendonly": "no",
    "appenddirname": "appendonlydir",
    "appendfilename": "appendonly.aof",
    "dbfilename": "dump.rdb",
    "aof-load-truncated": "yes",
    "aof-use-rdb-preamble": "yes",
}
MAX_INCLUDE_DEPTH = 5


class PersistenceError(RunbookError):
    """A data file or redis.conf could not be read, or a check tool could not run."""

    default_hint = "redis-runbook diagnose"


def _split(line: str) -> list[str]:
    """One redis.conf line into words, honouring quotes like `sdssplitargs`."""
    try:
        return shlex.split(line, comments=False, posix=True)
    except ValueError:
        return line.split()


def read_redis_conf(path: Path, _depth: int = 0) -> dict[str, str]:
    """The directives of a redis.conf as {name: value} (names lower-cased, last wins,
    values of multi-word directives joined by one space). Raises PersistenceError
    when the file cannot be read."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise PersistenceError(
            f"cannot read {path}: {exc.strerror}", "check [service] redis_conf in the config"
        ) from None
    settings: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        words = _split(line)
        if not words:
            continue
        name, values = words[0].lower(), words[1:]
        if name == "include" and values and _depth < MAX_INCLUDE_DEPTH:
            included = Path(values[0])
            if not included.is_absolute():
                included = path.parent / included
            settings.update(read_redis_conf(included, _depth + 1))
            continue
        settings[name] = " ".join(values)
    return settings


def _yes(value: str | None) -> bool | None:
    if value is None:
        return None
    return value.strip().lower() == "yes"


@dataclass(frozen=True)
class DataLayout:
    """The data files of one server, as host paths."""

    data_dir: Path
    appendonly: bool | None
    appenddirname: str = "appendonlydir"
    appendfilename: str = "appendonly.aof"
    dbfilename: str = "dump.rdb"
    aof_load_truncated: bool = True
    source: str = "defaults"

    @property
    def rdb_path(self) -> Path:
        """The RDB snapshot (`dir`/`dbfilename`)."""
        return self.data_dir / self.dbfilename

    @property
    def aof_dir(self) -> Path:
        """The multi-part AOF directory (`dir`/`appenddirname`, Redis 7+)."""
        return self.data_dir / self.appenddirname

    @property
    def manifest_path(self) -> Path:
        """The multi-part AOF manifest."""
        return self.aof_dir / f"{self.appendfilename}.manifest"

    @property
    def single_aof_path(self) -> Path:
        """The pre-7.0 single AOF file (`dir`/`appendfilename`)."""
        return self.data_dir / self.appendfilename

    def relative(self, path: Path) -> Path:
        """`path` relative to the data dir (for run_tool paths and reports)."""
        try:
            return path.relative_to(self.data_dir)
        except ValueError:
            return path


def layout_from_settings(
    data_dir: Path, settings: dict[str, str], source: str, *, prefer_conf_dir: bool = False
) -> DataLayout:
    """A DataLayout from redis.conf-style settings. With `prefer_conf_dir`, an
    absolute `dir` in the settings replaces `data_dir` (the process backend: the
    tool and the server share one filesystem)."""
    merged = {**REDIS_DEFAULTS, **settings}
    conf_dir = settings.get("dir")
    if prefer_conf_dir and conf_dir and Path(conf_dir).is_absolute():
        data_dir = Path(conf_dir)
    return DataLayout(
        data_dir=data_dir,
        appendonly=_yes(settings.get("appendonly")) if "appendonly" in settings else None,
        appenddirname=merged["appenddirname"],
        appendfilename=merged["appendfilename"],
        dbfilename=merged["dbfilename"],
        aof_load_truncated=bool(_yes(merged["aof-load-truncated"])),
        source=source,
    )


def set_conf_directive(path: Path, name: str, value: str) -> None:
    """Set `name value` in a redis.conf: replace every line that sets it, or append
    one. Comments and the other lines are kept as they are."""
    lines = path.read_text().splitlines()
    found = False
    kept: list[str] = []
    for line in lines:
        words = _split(line.strip()) if line.strip() and not line.lstrip().startswith("#") else []
        if words and words[0].lower() == name.lower():
            if not found:
                kept.append(f"{name} {value}")
                found = True
            continue
        kept.append(line)
    if not found:
        kept.append(f"{name} {value}")
    path.write_text("\n".join(kept) + "\n")
