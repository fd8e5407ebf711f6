"""Faults on data files, injected for real: the server is killed with SIGKILL (a crash,
nothing saved), a file is damaged the way disks and crashes damage them, and —
except for `aof-truncate`, which a start would silently repair — the server is started
once so that it fails on its own and logs the genuine error.

The original of every file changed is copied to `<workdir>/fault-backups/<stamp>/`
first; a file "lost" from the manifest is moved there, never deleted.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import redis

from redis_runbook.bgsave import RewriteTimeout, wait_no_rewrite
from redis_runbook.errors import LabError
from redis_runbook.lab.faults_base import (
    Injected,
    attempt_start,
    backup_dir,
    client,
    keep_copy,
    kill_if_running,
    running,
    save,
    server_layout,
    write_markers,
)
from redis_runbook.lab.server import RedisServer
from redis_runbook.persistence.aof import AofFileState, AofLayout, discover_aof
from redis_runbook.persistence.layout import set_conf_directive
from redis_runbook.persistence.rdb import read_rdb_header

GARBAGE = b"!garbage!@#$%^&*\r\n"
CRC_MARKER = b"0123456789abcdef"
REWRITE_TIMEOUT_S = 20.0


def _aof(server: RedisServer) -> AofLayout:
    layout = discover_aof(server_layout(server))
    if layout.kind not in ("multi-part", "single") or not layout.loaded:
        raise LabError(
            f"no AOF in {server.data_dir} to damage (appendonly no?)",
            "redis-runbook lab up   # the lab runs with appendonly yes",
        )
    return layout


def _last_with_data(server: RedisServer) -> AofFileState:
    last = _aof(server).last
    if last is None or not last.exists or not last.size:
        raise LabError(f"the last AOF file in {server.data_dir} is empty: write some data first")
    return last


def _crash_after_writes(server: RedisServer) -> None:
    """Write data the fault can damage, then kill -9 (when the server runs)."""
    if running(server):
        write_markers(server)
        kill_if_running(server)


def _command_starts(data: bytes) -> list[int]:
    """Offsets where a RESP command (`*<argc>`) begins."""
    starts = [0] if data.startswith(b"*") else []
    index = data.find(b"\n*")
    while index != -1:
        starts.append(index + 1)
        index = data.find(b"\n*", index + 1)
    return starts


def _started(server: RedisServer, injected: Injected) -> Injected:
    injected.server_state = attempt_start(server)
    return injected


def aof_truncate(server: RedisServer) -> Injected:
    """Cut the last AOF file in the middle of its last command (a crash mid-write).
    The server is left down: with aof-load-truncated yes a start would cut it back."""
    _crash_after_writes(server)
    last = _last_with_data(server)
    data = last.path.read_bytes()
    begin = _command_starts(data)[-1]
    cut = begin + max(1, (len(data) - begin) // 2)
    copy = keep_copy(server, last.path)
    with last.path.open("r+b") as handle:
        handle.truncate(cut)
    summary = f"cut {last.info.name} from {len(data)} to {cut} bytes, inside its last command"
    return Injected("aof-truncate", summary, [last.path], [copy], server_state="stopped")


def aof_garbage_last(server: RedisServer) -> Injected:
    """Insert bytes that are not RESP between two commands in the middle of the last
    AOF file; the server refuses to load it (`Bad file format`)."""
    _crash_after_writes(server)
    last = _last_with_data(server)
    data = last.path.read_bytes()
    starts = _command_starts(data)
    at = starts[len(starts) // 2] if len(starts) > 1 else len(data) // 2
    copy = keep_copy(server, last.path)
    last.path.write_bytes(data[:at] + GARBAGE + data[at:])
    summary = f"inserted {len(GARBAGE)} bytes of garbage at offset {at} of {last.info.name}"
    return _started(server, Injected("aof-garbage-last", summary, [last.path], [copy]))


def _rewrite_then_write(server: RedisServer) -> None:
    """BGREWRITEAOF (a BASE with data), wait for it, write more (a non-empty INCR)."""
    write_markers(server, prefix="fault:base")
    conn = client(server)
    try:
        conn.execute_command("BGREWRITEAOF")
        wait_no_rewrite(conn, REWRITE_TIMEOUT_S)
    except RewriteTimeout as exc:
        raise LabError(exc.message) from None
    except redis.RedisError as exc:
        raise LabError(f"BGREWRITEAOF before the fault failed: {exc}") from None
    finally:
        conn.close()
    write_markers(server, prefix="fault:incr")


def aof_garbage_nonlast(server: RedisServer) -> Injected:
    """Damage the BASE file, which is not the last one (INCR files follow it):
    garbage in its middle. `redis-check-aof --fix` cannot repair a file that is not
    the last; the server refuses to load it."""
    if running(server):
        _rewrite_then_write(server)
        kill_if_running(server)
    layout = _aof(server)
    base = layout.loaded[0]
    if len(layout.loaded) < 2 or not base.exists or not base.size:
        raise LabError("the AOF has no BASE followed by INCR files: start the server first")
    data = base.path.read_bytes()
    starts = _command_starts(data) if not data.startswith(b"REDIS") else []
    at = starts[len(starts) // 2] if len(starts) > 1 else len(data) // 2
    copy = keep_copy(server, base.path)
    base.path.write_bytes(data[:at] + GARBAGE + data[at:])
    summary = f"inserted garbage at offset {at} of the BASE {base.info.name} (not the last file)"
    return _started(server, Injected("aof-garbage-nonlast", summary, [base.path], [copy]))


def manifest_corrupt(server: RedisServer) -> Injected:
    """Garble the last line of the AOF manifest (`Invalid AOF manifest file format`)."""
    _crash_after_writes(server)
    layout = _aof(server)
    if layout.manifest_path is None:
        raise LabError("this AOF has no manifest (a pre-7.0 single file)")
    path = layout.manifest_path
    lines = path.read_text().splitlines()
    lines[-1] = lines[-1][: len(lines[-1]) // 2] + " ~garbage~"
    copy = keep_copy(server, path)
    path.write_text("\n".join(lines) + "\n")
    summary = f"garbled the last line of {path.name}: {lines[-1]!r}"
    return _started(server, Injected("manifest-corrupt", summary, [path], [copy]))


def manifest_missing_file(server: RedisServer) -> Injected:
    """Move the last AOF file the manifest names out of the AOF dir (into the fault
    backup dir), as a bad copy or a careless cleanup would."""
    _crash_after_writes(server)
    last = _last_with_data(server)
    if _aof(server).kind != "multi-part":
        raise LabError("this AOF has no manifest (a pre-7.0 single file)")
    moved = backup_dir(server) / last.info.name
    shutil.move(last.path, moved)
    summary = f"moved {last.info.name} (named in the manifest) to {moved}"
    return _started(server, Injected("manifest-missing-file", summary, [last.path], [moved]))


def _rdb_prepared(server: RedisServer) -> Path:
    """A fresh dump.rdb with data, the server killed, and appendonly no in redis.conf
    so that the RDB is what loads at the next start."""
    if running(server):
        write_markers(server)
        save(server)
        kill_if_running(server)
    set_conf_directive(server.conf_path, "appendonly", "no")
    server.settings["appendonly"] = "no"
    path = server_layout(server).rdb_path
    if not path.is_file() or path.stat().st_size <= 9:
        raise LabError(f"no {path.name} with data in {path.parent}: start the server first")
    return path


def rdb_crc(server: RedisServer) -> Injected:
    """Flip one bit inside a value of dump.rdb: it still parses, the checksum fails."""
    path = _rdb_prepared(server)
    data = bytearray(path.read_bytes())
    at = data.find(CRC_MARKER)
    if at == -1:
        at = len(data) - 1  # the checksum itself
    data[at] ^= 0x01
    copy = keep_copy(server, path)
    path.write_bytes(bytes(data))
    summary = f"flipped one bit at offset {at} of {path.name} (appendonly set to no)"
    return _started(server, Injected("rdb-crc", summary, [path], [copy]))


def rdb_truncate(server: RedisServer) -> Injected:
    """Cut dump.rdb to 60 % of its size (a copy that stopped half-way)."""
    path = _rdb_prepared(server)
    size = path.stat().st_size
    cut = max(10, size * 6 // 10)
    copy = keep_copy(server, path)
    with path.open("r+b") as handle:
        handle.truncate(cut)
    summary = f"cut {path.name} from {size} to {cut} bytes (appendonly set to no)"
    return _started(server, Injected("rdb-truncate", summary, [path], [copy]))


def rdb_newer(server: RedisServer) -> Injected:
    """Write a newer RDB version into the header (REDIS0013, or one past what this
    server just wrote, whichever is newer): a dump from a newer Redis."""
    path = _rdb_prepared(server)
    written = read_rdb_header(path).version or 10
    version = max(13, written + 1)
    data = path.read_bytes()
    copy = keep_copy(server, path)
    path.write_bytes(b"REDIS%04d" % version + data[9:])
    summary = f"set the header of {path.name} to REDIS{version:04d} (appendonly set to no)"
    return _started(server, Injected("rdb-newer", summary, [path], [copy]))


def config_error(server: RedisServer) -> Injected:
    """Add a misspelt directive to redis.conf and restart: Redis refuses to start
    (`FATAL CONFIG FILE ERROR`, printed on stderr, not in the log)."""
    if running(server):
        server.stop(save=True)
    copy = keep_copy(server, server.conf_path)
    with server.conf_path.open("a") as handle:
        handle.write("maxmemory-polcy noeviction\n")
    server.settings["maxmemory-polcy"] = "noeviction"
    summary = f"added `maxmemory-polcy noeviction` (a typo) to {server.conf_path}"
    return _started(server, Injected("config-error", summary, [server.conf_path], [copy]))
