"""AOF and RDB on disk: headers, manifests, layouts, and the verdicts of the real
redis-check-aof / redis-check-rdb on files a real redis-server wrote and that the
test then damaged (truncated, garbled, moved away)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from redis_runbook.persistence.aof import (
    AofFileInfo,
    ManifestError,
    discover_aof,
    parse_manifest,
)
from redis_runbook.persistence.aof_check import AofCheck, check_aof, parse_check_aof
from redis_runbook.persistence.layout import (
    DataLayout,
    layout_from_settings,
    read_redis_conf,
    set_conf_directive,
)
from redis_runbook.persistence.rdb import (
    check_rdb,
    installed_redis_version,
    max_rdb_version_of,
    parse_check_rdb,
    read_rdb_header,
    with_trailer,
    writers_of,
)
from redis_runbook.service.process import ProcessService
from tests.support.server_version import too_new_rdb_version
from tests.support.servers import RedisFactory, info, plain_client, process_config
from tests.support.waiting import wait_until

GARBAGE = b"!garbage!@#$%^&*\r\n"


@pytest.fixture
def stopped(redis_factory: RedisFactory) -> tuple[ProcessService, DataLayout]:
    """A server that wrote an AOF (base + incr) and a dump.rdb, then was killed."""
    server = redis_factory()
    with plain_client(server) as client:
        client.mset({f"key:{i}": f"value-{i}-" + "x" * 30 for i in range(200)})
        client.save()
        client.mset({f"more:{i}": i for i in range(50)})
    server.kill()
    config = process_config(server)
    service = ProcessService(config.service, config.target)
    settings = read_redis_conf(server.conf_path)
    return service, layout_from_settings(server.data_dir, settings, "test", prefer_conf_dir=True)


def aof_check(service: ProcessService, layout: DataLayout) -> AofCheck:
    path = discover_aof(layout).check_path
    assert path is not None
    return check_aof(service, path)


def last_incr(layout: DataLayout) -> Path:
    last = discover_aof(layout).last
    assert last is not None
    return last.path


def command_starts(data: bytes) -> list[int]:
    return [0] + [i + 1 for i in range(len(data)) if data[i : i + 2] == b"\n*"]


# --- RDB ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "rdb"),
    [
        ("6.2.14", 9),
        ("7.0.15", 10),
        ("7.2.4", 11),
        ("7.4.1", 12),
        ("8.0.0", 12),
        ("8.4.0", 12),
        ("8.6.0", 13),
        ("2.4.0", None),
        ("unstable", None),
    ],
)
def test_max_rdb_version_of(version: str, rdb: int | None) -> None:
    assert max_rdb_version_of(version) == rdb


def test_rdb_header_and_check_of_a_real_dump(stopped: tuple[ProcessService, DataLayout]) -> None:
    service, layout = stopped
    installed = installed_redis_version(service)
    assert installed is not None
    header = read_rdb_header(layout.rdb_path)
    assert header.magic_ok
    assert header.version == max_rdb_version_of(installed)
    assert writers_of(10) == "Redis 7.0"
    check = check_rdb(service, layout.rdb_path)
    assert check.ok
    assert check.problem is None
    assert check.keys_read == 200


def damaged_rdb(layout: DataLayout, tmp_path: Path, how: str) -> Path:
    data = bytearray(layout.rdb_path.read_bytes())
    if how == "crc":
        data[data.find(b"value-150-") + 3] ^= 0x01
    elif how == "truncated":
        del data[len(data) * 6 // 10 :]
    elif how == "too-new":
        data[:9] = b"REDIS%04d" % too_new_rdb_version()
    elif how == "not-rdb":
        data[:5] = b"XEDIS"
    path = tmp_path / f"{how}.rdb"
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    ("how", "error", "doing"),
    [
        ("crc", "RDB CRC error", {"check-sum"}),
        ("truncated", "Unexpected EOF reading RDB file", {"read-key", "read-object-value"}),
        ("too-new", f"Can't handle RDB format version {too_new_rdb_version()}", {"start"}),
        ("not-rdb", "Wrong signature trying to load DB from file", {"start"}),
    ],
)
def test_redis_check_rdb_verdicts(
    stopped: tuple[ProcessService, DataLayout],
    tmp_path: Path,
    how: str,
    error: str,
    doing: set[str],
) -> None:
    service, layout = stopped
    path = damaged_rdb(layout, tmp_path, how)
    check = check_rdb(service, path)
    assert not check.ok
    assert check.returncode == 1
    assert check.problem == how
    assert check.error == error
    assert check.while_doing in doing
    assert check.offset is not None
    assert check.summary.startswith(f"[offset {check.offset}] {error}")
    header = read_rdb_header(path)
    if how == "too-new":
        newer = too_new_rdb_version()
        assert (header.version, check.format_version) == (newer, newer)
        assert header.summary.startswith(f"RDB version {newer} ({writers_of(newer)})")
    if how == "not-rdb":
        assert not header.magic_ok
        assert header.summary.startswith("not an RDB file")


def test_an_rdb_cut_inside_a_stream_is_truncated_not_corrupt(
    redis_factory: RedisFactory, tmp_path: Path
) -> None:
    """Cut in the middle of a stream's listpack (BullMQ's events stream), Redis blames
    the listpack, not a short read; the file's missing EOF trailer says it was cut.
    A whole file with a flipped bit keeps its trailer: still a checksum error."""
    server = redis_factory()
    with plain_client(server) as client:
        for i in range(3000):
            client.xadd("bull:q:events", {"event": "waiting", "jobId": str(i), "prev": "x" * 20})
        client.save()
    server.kill()
    config = process_config(server)
    service = ProcessService(config.service, config.target)
    data = (server.data_dir / "dump.rdb").read_bytes()
    cut = tmp_path / "cut.rdb"
    cut.write_bytes(data[: len(data) // 2])  # the stream is nearly the whole file
    check = with_trailer(check_rdb(service, cut), cut)
    assert (check.ok, check.ends_with_eof, check.problem) == (False, False, "truncated")
    whole = with_trailer(
        check_rdb(service, server.data_dir / "dump.rdb"), server.data_dir / "dump.rdb"
    )
    assert (whole.ok, whole.ends_with_eof, whole.problem) == (True, True, None)


def test_redis_check_rdb_on_a_missing_file(
    stopped: tuple[ProcessService, DataLayout], tmp_path: Path
) -> None:
    service, _ = stopped
    check = check_rdb(service, tmp_path / "nowhere.rdb")
    assert (check.ok, check.problem) == (False, "missing")


def test_parse_check_rdb_ok_output() -> None:
    output = (
        "[offset 0] Checking RDB file dump.rdb\n[offset 89] \\o/ RDB looks OK! \\o/\n"
        "[info] 3 keys read\n"
    )
    check = parse_check_rdb(output, 0)
    assert (check.ok, check.file, check.keys_read) == (True, "dump.rdb", 3)
    assert check.summary == "RDB looks OK, 3 keys"


# --- manifest -----------------------------------------------------------------------------


def test_parse_manifest_of_a_real_server(stopped: tuple[ProcessService, DataLayout]) -> None:
    _, layout = stopped
    aof = discover_aof(layout)
    assert aof.kind == "multi-part"
    assert aof.manifest is not None
    base, incr = aof.manifest.loaded
    assert (base.type, base.seq, base.name.endswith(".base.rdb")) == ("b", 1, True)
    assert (incr.type, incr.kind) == ("i", "incr")
    assert aof.missing == ()
    assert aof.is_last(incr.name)
    assert not aof.is_last(base.name)


def test_parse_manifest_quoting_comments_and_history() -> None:
    manifest = parse_manifest(
        "# a comment\n"
        'file "odd name.base.rdb" seq 2 type b future yes\n'
        "file appendonly.aof.1.incr.aof seq 1 type h\n"
        "file appendonly.aof.2.incr.aof seq 2 type i\n"
        "file appendonly.aof.3.incr.aof seq 3 type i\n"
    )
    assert manifest.base == AofFileInfo("odd name.base.rdb", 2, "b")
    assert [e.name for e in manifest.loaded] == [
        "odd name.base.rdb",
        "appendonly.aof.2.incr.aof",
        "appendonly.aof.3.incr.aof",
    ]
    assert [e.kind for e in manifest.entries].count("history") == 1


BAD_MANIFESTS = [
    ("", "Found an empty AOF manifest", None),
    ("file a.base.rdb seq 1 type b\ngarbage line\n", "Invalid AOF manifest file format", 2),
    ("\n", "Invalid AOF manifest file format", 1),
    ("file a.rdb seq 1\n", "Invalid AOF manifest file format", 1),
    ("file dir/a.rdb seq 1 type b\n", "File can't be a path, just a filename", 1),
    ("file a seq 1 type b\nfile b seq 2 type b\n", "Found duplicate base file information", 2),
    ("file a seq 2 type i\nfile b seq 2 type i\n", "Found a non-monotonic sequence number", 2),
    ("file a seq 1 type x\n", "Unknown AOF file type", 1),
    ("file a seq zero type i\n", "Invalid AOF manifest file format", 1),
]


@pytest.mark.parametrize(("text", "reason", "line"), BAD_MANIFESTS)
def test_bad_manifests_match_redis_own_verdict(
    stopped: tuple[ProcessService, DataLayout], text: str, reason: str, line: int | None
) -> None:
    """Our parser and the real redis-check-aof agree on the reason and the line."""
    service, layout = stopped
    with pytest.raises(ManifestError) as raised:
        parse_manifest(text)
    assert raised.value.reason == reason
    assert raised.value.line_number == line
    layout.manifest_path.write_text(text)
    if "file" in text:  # without a `file` line the tool does not see a manifest
        check = aof_check(service, layout)
        assert (check.problem, check.reason, check.manifest_line) == ("manifest", reason, line)


# --- layouts ------------------------------------------------------------------------------


def test_layout_missing_orphaned_single_and_none(
    stopped: tuple[ProcessService, DataLayout], tmp_path: Path
) -> None:
    service, layout = stopped
    incr = last_incr(layout)
    aside = tmp_path / incr.name
    shutil.move(incr, aside)
    aof = discover_aof(layout)
    assert [f.info.name for f in aof.missing] == [incr.name]
    check = aof_check(service, layout)
    assert (check.problem, check.file, check.reason) == (
        "missing-file",
        incr.name,
        "No such file or directory",
    )
    shutil.move(aside, incr)

    manifest_aside = tmp_path / layout.manifest_path.name
    shutil.move(layout.manifest_path, manifest_aside)
    orphaned = discover_aof(layout)
    assert orphaned.kind == "orphaned"
    assert incr.name in orphaned.unlisted
    assert orphaned.check_path is None

    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(incr, old / "appendonly.aof")
    single = discover_aof(layout_from_settings(old, {}, "test"))
    assert single.kind == "single"
    assert single.check_path == old / "appendonly.aof"
    assert single.is_last("appendonly.aof")
    assert check_aof(service, old / "appendonly.aof").valid
    assert discover_aof(layout_from_settings(tmp_path / "none", {}, "test")).kind == "none"


def test_redis_conf_reading_and_setting(tmp_path: Path) -> None:
    extra = tmp_path / "extra.conf"
    extra.write_text('appenddirname "my aof dir"\n')
    conf = tmp_path / "redis.conf"
    conf.write_text(
        f"# comment\nappendonly yes\ndir {tmp_path}/d\ninclude {extra}\n"
        "dbfilename first.rdb\ndbfilename last.rdb\nsave 3600 1 300 100\n"
    )
    settings = read_redis_conf(conf)
    assert settings["save"] == "3600 1 300 100"
    layout = layout_from_settings(tmp_path / "other", settings, "test", prefer_conf_dir=True)
    assert layout.data_dir == tmp_path / "d"
    assert layout.rdb_path == tmp_path / "d" / "last.rdb"
    assert layout.aof_dir == tmp_path / "d" / "my aof dir"
    assert layout.appendonly is True
    assert layout_from_settings(tmp_path / "other", settings, "t").data_dir == tmp_path / "other"

    set_conf_directive(conf, "appendonly", "no")
    set_conf_directive(conf, "dbfilename", "x.rdb")
    set_conf_directive(conf, "maxmemory", "1mb")
    text = conf.read_text()
    assert "appendonly no" in text
    assert "appendonly yes" not in text
    assert text.count("dbfilename") == 1
    assert text.endswith("maxmemory 1mb\n")
    assert text.startswith("# comment\n")


# --- redis-check-aof ----------------------------------------------------------------------


def test_valid_aof(stopped: tuple[ProcessService, DataLayout]) -> None:
    service, layout = stopped
    check = aof_check(service, layout)
    assert check.valid
    assert check.returncode == 0
    assert check.summary == "all AOF files and the manifest are valid"
    assert len(check.valid_files) == 2


def test_every_cut_inside_the_last_command_is_truncation(
    stopped: tuple[ProcessService, DataLayout],
) -> None:
    service, layout = stopped
    incr = last_incr(layout)
    data = incr.read_bytes()
    last = command_starts(data)[-1]
    # Every cut in the command's header and first argument, then a sample of the rest.
    cuts = [*range(last + 1, last + 40), *range(last + 40, len(data), 23)]
    for cut in cuts:
        incr.write_bytes(data[:cut])
        check = aof_check(service, layout)
        assert check.problem == "truncated", (cut, check.reason)
        assert (check.file, check.ok_up_to, check.size) == (incr.name, last, cut)
        assert check.diff == cut - last
        assert not check.not_last
    incr.write_bytes(data)


def test_garbage_in_the_middle_is_a_format_error(
    stopped: tuple[ProcessService, DataLayout],
) -> None:
    service, layout = stopped
    incr = last_incr(layout)
    data = incr.read_bytes()
    starts = command_starts(data)
    middle = starts[len(starts) // 2]
    for at in (middle, middle + 3, middle + 9, middle + 20):
        incr.write_bytes(data[:at] + GARBAGE + data[at:])
        check = aof_check(service, layout)
        assert check.problem == "format", (at, check.reason)
        assert check.ok_up_to == middle
        assert check.diff == len(data) + len(GARBAGE) - middle
    incr.write_bytes(data[:middle] + GARBAGE + data[middle:])
    assert aof_check(service, layout).reason == f"AOF {incr.name} format error"


def test_damaged_rdb_base_is_reported_with_the_rdb_error(
    stopped: tuple[ProcessService, DataLayout],
) -> None:
    service, layout = stopped
    aof = discover_aof(layout)
    base = aof.loaded[0].path
    data = base.read_bytes()
    for at in range(20, len(data), max(1, len(data) // 15)):  # garbage anywhere in it
        base.write_bytes(data[:at] + GARBAGE + data[at:])
        garbled = aof_check(service, layout)
        assert (garbled.problem, garbled.file) == ("rdb-base", base.name), at
        assert garbled.rdb is not None
        assert garbled.rdb.error
    base.write_bytes(data[: len(data) // 2])
    check = aof_check(service, layout)
    assert (check.problem, check.file) == ("rdb-base", base.name)
    assert check.rdb is not None
    assert check.rdb.problem == "truncated"
    assert "is not sane" in check.summary


def test_fix_output_and_the_not_last_file_case(redis_factory: RedisFactory, tmp_path: Path) -> None:
    """`--fix` is the recovery procedure's tool; its output is parsed here on copies:
    a fixed last file, and a RESP BASE that --fix refuses because it is not last."""
    server = redis_factory({"aof-use-rdb-preamble": "no"})
    with plain_client(server) as client:
        client.mset({f"k{i}": i for i in range(100)})
        client.bgrewriteaof()

        def rewritten() -> bool:
            persistence = info(client, "persistence")
            return not (
                persistence["aof_rewrite_in_progress"] or persistence["aof_rewrite_scheduled"]
            )

        wait_until(rewritten, "the AOF rewrite to finish")
        client.mset({f"after{i}": i for i in range(20)})
    server.kill()
    copy = tmp_path / "copy"
    shutil.copytree(server.data_dir, copy)
    layout = layout_from_settings(copy, {}, "test")
    aof = discover_aof(layout)
    assert [f.info.name for f in aof.loaded] == [
        "appendonly.aof.2.base.aof",
        "appendonly.aof.2.incr.aof",
    ]
    last = aof.loaded[-1].path
    last.write_bytes(last.read_bytes()[:-7])
    manifest = str(layout.manifest_path)
    fix = ["redis-check-aof", "--fix", manifest]
    done = subprocess.run(fix, input="y\n", capture_output=True, text=True, check=False)
    fixed = parse_check_aof(done.stdout, done.returncode)
    assert (fixed.valid, fixed.fixed, fixed.file) == (True, True, last.name)

    base = aof.loaded[0].path
    base.write_bytes(base.read_bytes()[:-5])
    done = subprocess.run(fix, input="y\n", capture_output=True, text=True, check=False)
    refused = parse_check_aof(done.stdout, done.returncode)
    assert refused.not_last
    assert (refused.valid, refused.problem, refused.file) == (False, "truncated", base.name)
    assert aof.is_last(base.name) is False


def test_parse_check_aof_keeps_unknown_failures() -> None:
    check = parse_check_aof("Invalid arguments\n", 1)
    assert (check.valid, check.problem, check.reason) == (False, "io-error", "Invalid arguments")
    assert parse_check_aof("", 0).valid is False
