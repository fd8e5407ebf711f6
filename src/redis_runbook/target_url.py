"""The [target] url, checked whole: scheme, host, port 1-65535, db a non-negative
integer (path or ?db=), a socket path for unix://. Errors say what was expected and
quote the URL with its password hidden."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn
from urllib.parse import parse_qsl, unquote, urlsplit

from redis_runbook.redaction import redact_url

URL_SCHEMES = ("redis", "rediss", "unix")
DEFAULT_PORT = 6379
_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class TargetUrl:
    """The parts of a valid target URL that the tool uses."""

    scheme: str
    host: str | None  # None for unix://
    port: int | None  # None for unix://
    socket: str | None  # the unix socket path
    db: int
    username: str | None
    has_password: bool


def _raw_port(hostport: str) -> str | None:
    """The text after the host's `:` (None when there is no port), IPv6 aware."""
    if hostport.startswith("["):
        tail = hostport.partition("]")[2]
        return tail[1:] if tail.startswith(":") else None
    return hostport.rpartition(":")[2] if ":" in hostport else None


def _port(hostport: str, bad: Callable[[str], NoReturn]) -> int:
    raw = _raw_port(hostport)
    if raw is None:
        return DEFAULT_PORT
    if not _DIGITS.fullmatch(raw):
        bad(f"port {raw!r} is not a number (expected 1-65535)")
    port = int(raw)
    if not 1 <= port <= 65_535:
        bad(f"port {port} is out of range (expected 1-65535)")
    return port


def parse_target_url(url: str) -> TargetUrl:
    """Check `url` and return its parts; ValueError `<problem>, got '<redacted url>'`."""
    shown = repr(redact_url(url))

    def bad(problem: str) -> NoReturn:
        raise ValueError(f"{problem}, got {shown}")

    try:
        parts = urlsplit(url)
    except ValueError:
        bad("expected a URL like redis://host:6379/0")
    if parts.scheme not in URL_SCHEMES:
        bad("expected a redis://, rediss:// or unix:// URL")
    userinfo = url.partition("://")[2].rpartition("@")[0]
    if ":" in userinfo and userinfo != parts.netloc.rpartition("@")[0]:
        bad(
            "the user or password holds a '/', '?' or '#' (expected them percent-encoded: "
            "%2F %3F %23)"
        )
    query = parse_qsl(parts.query, keep_blank_values=True)
    unknown = [name for name, _ in query if name != "db"]
    if unknown:
        bad(
            f"unknown query parameter {unknown[0]!r} (only ?db=N; timeouts and TLS "
            "are [target] keys: connect_timeout, command_timeout, tls_*)"
        )
    db_texts = [value for name, value in query if name == "db"]
    hostport = parts.netloc.rpartition("@")[2]
    host: str | None = None
    port: int | None = None
    socket: str | None = None
    if parts.scheme == "unix":
        socket = unquote(parts.path)
        if hostport or not socket or socket.endswith("/"):
            bad("no socket path (expected unix:///absolute/path/redis.sock?db=0, three slashes)")
    else:
        host = parts.hostname
        if not host:
            bad("no host (expected redis://host:6379/0)")
        port = _port(hostport, bad)
        path_db = unquote(parts.path).strip("/")
        if path_db:
            db_texts.insert(0, path_db)
    for text in db_texts:
        if not _DIGITS.fullmatch(text):
            bad(f"db {text!r} is not a non-negative integer (expected /0, /1, ...)")
    if len(db_texts) > 1:
        bad("the db is given twice (expected it once: /N or ?db=N)")
    db = int(db_texts[0]) if db_texts else 0
    return TargetUrl(
        scheme=parts.scheme,
        host=host,
        port=port,
        socket=socket,
        db=db,
        username=unquote(parts.username) if parts.username else None,
        has_password=bool(parts.password),
    )
