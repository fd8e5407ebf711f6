"""Every fault `lab break` can inject: its name, what it does (the text of `lab break
--help`) and the scenario `diagnose` should report once it is injected. Plain data,
importing nothing, so that `redis-runbook --help` lists the faults without loading
the lab (redis, pydantic); lab/faults.py binds each name to its injection."""

from __future__ import annotations

from typing import NamedTuple


class FaultEntry(NamedTuple):
    """A fault as the CLI names and describes it."""

    name: str
    expect: str  # the scenario code and cause `diagnose` reports, e.g. "D aof-format"
    help: str


FAULT_CATALOGUE: tuple[FaultEntry, ...] = (
    FaultEntry("kill", "A crashed", "SIGKILL while a client writes"),
    FaultEntry("hang", "A hung", "SIGSTOP (undo: lab break unhang)"),
    FaultEntry(
        "aof-truncate", "D aof-truncated", "kill -9, cut the last AOF file mid-command; left down"
    ),
    FaultEntry(
        "aof-garbage-last",
        "D aof-format",
        "kill -9, garbage in the middle of the last AOF file, start (fails)",
    ),
    FaultEntry(
        "aof-garbage-nonlast",
        "D aof-nonlast",
        "rewrite, kill -9, garbage in the BASE file (not the last), start (fails)",
    ),
    FaultEntry(
        "manifest-corrupt", "D aof-manifest", "kill -9, garble the AOF manifest, start (fails)"
    ),
    FaultEntry(
        "manifest-missing-file",
        "D aof-missing-file",
        "kill -9, move a file the manifest names away, start (fails)",
    ),
    FaultEntry(
        "rdb-crc",
        "D rdb-crc",
        "SAVE, kill -9, appendonly no, flip a bit in dump.rdb, start (fails)",
    ),
    FaultEntry(
        "rdb-truncate",
        "D rdb-truncated",
        "SAVE, kill -9, appendonly no, cut dump.rdb to 60 %, start (fails)",
    ),
    FaultEntry(
        "rdb-newer",
        "D rdb-too-new",
        "SAVE, kill -9, appendonly no, header REDIS0013, start (fails)",
    ),
    FaultEntry(
        "config-error",
        "A config-error",
        "stop, add a misspelt directive to redis.conf, start (fails)",
    ),
    FaultEntry(
        "disk-full",
        "A disk-full",
        "tmpfs over the data dir, filled until AOF writes fail (root; undo: lab break heal)",
    ),
    FaultEntry(
        "oom", "B oom-rejections", "fill memory to maxmemory (noeviction) until a write gets OOM"
    ),
    FaultEntry("slow-script", "C busy-script", "a Lua busy loop for --seconds"),
    FaultEntry("pause", "C paused", "CLIENT PAUSE for --seconds"),
    FaultEntry(
        "blocked-clients", "C blocked-clients", "--count clients blocked in BLPOP for --seconds"
    ),
)
