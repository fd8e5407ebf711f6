"""Parsers for Redis' text replies, by field name, tolerant of fields added in
later versions (7.2 lib-name=, 7.4 subexpiry=, 8.x sections): unknown fields are
kept as strings and never break parsing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def text(reply: object) -> str:
    """A raw text reply as str, whether the client decodes responses or not."""
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def parse_info(text: str) -> dict[str, str]:
    """INFO text to a flat {field: value} dict. Section headers are dropped; a
    field name is unique across sections."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def info_fields(reply: Any) -> dict[str, str]:
    """An INFO reply as {field: value}: raw text (the tool's clients, bytes or str)
    or the dict a plain redis-py client parses it into."""
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    return parse_info(text(reply))


def parse_pairs(text: str, sep: str = ",") -> dict[str, str]:
    """`a=1,b=2` to {'a': '1', 'b': '2'} (keyspace, errorstat, slaveN lines)."""
    pairs: dict[str, str] = {}
    for item in text.split(sep):
        key, eq, value = item.partition("=")
        if eq:
            pairs[key.strip()] = value.strip()
    return pairs


@dataclass(frozen=True)
class DbStats:
    """One `dbN:` keyspace line."""

    db: int
    keys: int
    expires: int
    avg_ttl_ms: int


def keyspace(info: dict[str, str]) -> list[DbStats]:
    """The keyspace section as DbStats, parsed by key name (7.4 adds subexpiry=)."""
    stats = []
    for field, value in info.items():
        if field.startswith("db") and field[2:].isdigit():
            pairs = parse_pairs(value)
            stats.append(
                DbStats(
                    db=int(field[2:]),
                    keys=int(pairs.get("keys", 0)),
                    expires=int(pairs.get("expires", 0)),
                    avg_ttl_ms=int(pairs.get("avg_ttl", 0)),
                )
            )
    return sorted(stats, key=lambda s: s.db)


def error_counts(info: dict[str, str]) -> dict[str, int]:
    """errorstats: {'OOM': 3, 'NOPERM': 1, ...}."""
    counts = {}
    for field, value in info.items():
        if field.startswith("errorstat_"):
            counts[field[len("errorstat_") :]] = int(parse_pairs(value).get("count", 0))
    return counts


def parse_client_list(text: str) -> list[dict[str, str]]:
    """CLIENT LIST text to one dict per client. Values never contain spaces except
    in the trailing fields some versions add, so split on ' ' then on the first '='."""
    clients = []
    for line in text.splitlines():
        if line.strip():
            clients.append(parse_pairs(line, sep=" "))
    return clients


def number(info: dict[str, str], field: str, default: float | None = None) -> float | None:
    """A numeric INFO field, or `default` when absent or not a number."""
    try:
        return float(info[field])
    except (KeyError, ValueError):
        return default
