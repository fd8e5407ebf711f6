"""Text parsers and units: tolerant of fields later Redis versions add."""

from __future__ import annotations

import pytest

from redis_runbook.replies import (
    DbStats,
    error_counts,
    keyspace,
    parse_client_list,
    parse_info,
)
from redis_runbook.target import display_url
from redis_runbook.units import format_bytes, format_duration, parse_size

# Shapes from Redis 7.4 / 8.x: keyspace subexpiry=, keysizes section, lib-name= and
# watch= in CLIENT LIST, fields this code has never heard of.
INFO_8X = (
    "# Server\r\nredis_version:8.4.0\r\nbrand_new_field:whatever:with:colons\r\n"
    "# Memory\r\nused_memory:1048576\r\nmaxmemory:8589934592\r\n"
    "# Errorstats\r\nerrorstat_OOM:count=7\r\nerrorstat_NOPERM:count=2\r\n"
    "# Keysizes\r\ndb0_distrib_strings_sizes:2=1,4=3\r\n"
    "# Keyspace\r\ndb0:keys=10,expires=3,avg_ttl=500,subexpiry=1\r\ndb12:keys=2,expires=0,"
    "avg_ttl=0\r\n"
)


def test_info_parses_by_field_name_and_keeps_unknown_fields() -> None:
    info = parse_info(INFO_8X)
    assert info["redis_version"] == "8.4.0"
    assert info["brand_new_field"] == "whatever:with:colons"
    assert info["used_memory"] == "1048576"
    assert keyspace(info) == [DbStats(0, 10, 3, 500), DbStats(12, 2, 0, 0)]
    assert error_counts(info) == {"OOM": 7, "NOPERM": 2}


def test_client_list_with_new_fields() -> None:
    text = (
        "id=3 addr=127.0.0.1:5 laddr=127.0.0.1:6379 fd=8 name=bull:ZXhw age=9 idle=0 "
        "flags=b db=0 cmd=bzpopmin user=default lib-name=ioredis lib-ver=5.4 watch=0 "
        "io-thread=0\n"
        "id=4 addr=127.0.0.1:6 fd=9 name= flags=N cmd=client|list\n"
    )
    clients = parse_client_list(text)
    assert [c["id"] for c in clients] == ["3", "4"]
    assert clients[0]["flags"] == "b"
    assert clients[0]["lib-name"] == "ioredis"
    assert clients[0]["io-thread"] == "0"
    assert clients[1]["name"] == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8gb", 8 * 1024**3),
        ("64mb", 64 * 1024**2),
        ("512k", 512_000),
        ("1kb", 1024),
        ("100", 100),
        ("1.5GB", int(1.5 * 1024**3)),
    ],
)
def test_parse_size_like_redis_conf(text: str, expected: int) -> None:
    assert parse_size(text) == expected


def test_parse_size_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="expected a size"):
        parse_size("lots")


def test_formatting() -> None:
    assert format_bytes(8 * 1024**3) == "8.0 GiB"
    assert format_bytes(512) == "512 B"
    assert format_duration(0.25) == "250 ms"
    assert format_duration(3725) == "1 h 02 m"
    assert format_duration(3 * 86400 + 7200) == "3 d 2 h"


def test_display_url_hides_only_the_password() -> None:
    assert display_url("redis://u:p%40ss@h:6380/2") == "redis://u:***@h:6380/2"
    assert display_url("rediss://:secret@h/0") == "rediss://:***@h/0"
    assert display_url("redis://h:6379/0") == "redis://h:6379/0"
    assert display_url("unix:///run/redis.sock?db=1") == "unix:///run/redis.sock?db=1"
