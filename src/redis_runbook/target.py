"""How to reach Redis: URL (redis://, rediss://, unix://), TLS, ACL credentials,
timeouts, and a client factory whose connections identify themselves.

Every connection the tool opens does one pipelined handshake (one round trip):
AUTH (when credentials are configured), CLIENT SETNAME redis-runbook,
CLIENT NO-EVICT on (Redis >= 7.0; ignored where unknown or not permitted),
CLIENT SETINFO lib-name/lib-ver (>= 7.2; ignored elsewhere) and SELECT.
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.connection import Connection, SSLConnection, UnixDomainSocketConnection, parse_url
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError
from redis.retry import Retry

from redis_runbook import __version__, secret
from redis_runbook.config import TargetConfig
from redis_runbook.errors import AuthFailed, RunbookError, TargetUnavailable


@dataclass(frozen=True)
class Handshake:
    """What a new connection sends before its first command. `repr` hides the password."""

    client_name: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    db: int = 0

    def commands(self) -> list[tuple[str | int, ...]]:
        """The handshake commands, in the order they are pipelined."""
        commands: list[tuple[str | int, ...]] = []
        if self.password is not None:
            auth: tuple[str, ...] = (self.password,)
            commands.append(("AUTH", self.username, *auth) if self.username else ("AUTH", *auth))
        commands += [
            ("CLIENT", "SETNAME", self.client_name),
            ("CLIENT", "NO-EVICT", "on"),
            ("CLIENT", "SETINFO", "LIB-NAME", "redis-runbook"),
            ("CLIENT", "SETINFO", "LIB-VER", __version__),
        ]
        if self.db:
            commands.append(("SELECT", self.db))
        return commands


class _HandshakeMixin:
    """Replaces redis-py's sequential handshake (one round trip per command) with
    one pipelined round trip. Optional commands may fail; AUTH and SELECT may not."""

    _handshake: Handshake
    driver_info: Any
    handshake_ms: float | None = None

    def __init__(self, *args: Any, handshake: Handshake, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._handshake = handshake
        # SETINFO is part of our own pipelined handshake.
        self.driver_info = None

    def on_connect_check_health(self, check_health: bool = True) -> None:
        super().on_connect_check_health(check_health=False)  # type: ignore[misc]
        commands = self._handshake.commands()
        conn: Any = self
        # The handshake is part of connecting: a server that accepts TCP but never
        # answers (stopped, wedged) must fail within the connect timeout.
        conn._sock.settimeout(conn.socket_connect_timeout)
        started = time.perf_counter()
        conn.send_packed_command(conn.pack_commands(commands), check_health=False)
        fatal: Exception | None = None
        for command in commands:
            try:
                conn.read_response(disconnect_on_error=False)
            except (AuthenticationError, NoPermissionError, ResponseError) as exc:
                required = command[0] in ("AUTH", "SELECT")
                if fatal is None and (required or isinstance(exc, AuthenticationError)):
                    fatal = exc
        # Also a Redis round trip: a server stalled by a busy script or a slow
        # command makes it wait, so health counts it as latency.
        self.handshake_ms = (time.perf_counter() - started) * 1000
        if fatal is not None:
            raise fatal
        conn._sock.settimeout(conn.socket_timeout)


class RunbookConnection(_HandshakeMixin, Connection):
    """TCP connection with the pipelined handshake."""


class RunbookSSLConnection(_HandshakeMixin, SSLConnection):
    """TLS connection with the pipelined handshake."""

    def _wrap_socket_with_ssl(self, sock: Any) -> Any:
        # redis-py runs the TLS handshake under socket_timeout (the command timeout);
        # it is part of connecting, so it gets the connect timeout.
        sock.settimeout(self.socket_connect_timeout)
        wrapped = super()._wrap_socket_with_ssl(sock)  # type: ignore[no-untyped-call]
        wrapped.settimeout(self.socket_timeout)
        return wrapped


class RunbookUnixConnection(_HandshakeMixin, UnixDomainSocketConnection):
    """Unix-socket connection with the pipelined handshake."""


def display_url(url: str) -> str:
    """The URL with any password replaced by `***`, safe to print and journal."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def target_display(target: TargetConfig) -> str:
    """How messages name the target: its redacted URL, or the Sentinel service."""
    if target.sentinel is not None:
        return f"sentinel:{target.sentinel.service}"
    return display_url(target.url)


def client_kwargs(
    target: TargetConfig,
    env: Mapping[str, str] | None = None,
    node: tuple[str, int] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for `redis.Redis` built from the target config. Resolves the
    password from its source (SecretError when that fails) and, for a Sentinel target,
    the current master (TargetUnavailable when no Sentinel names one); `node` aims at
    one given data node instead."""
    url_kwargs = parse_url(target.url)
    password = url_kwargs.pop("password", None) or secret.resolve(
        "target",
        env_var=target.password_env,
        file=target.password_file,
        command=target.password_command,
        env=os.environ if env is None else env,
    )
    username = url_kwargs.pop("username", None) or target.username
    handshake = Handshake(
        client_name=target.client_name,
        username=username,
        password=password,
        db=int(url_kwargs.pop("db", 0) or 0),
    )
    kwargs: dict[str, Any] = {
        "socket_connect_timeout": target.connect_timeout,
        "socket_timeout": target.command_timeout,
        # One attempt: a down server is reported within the connect timeout,
        # never after redis-py's default retries with backoff.
        "retry": Retry(NoBackoff(), 0),
        "decode_responses": True,
        "handshake": handshake,
    }
    scheme = target.scheme
    if scheme == "unix":
        kwargs["connection_class"] = RunbookUnixConnection
        kwargs["unix_socket_path"] = url_kwargs.pop("path", None)
    else:
        kwargs["host"] = url_kwargs.pop("host", "127.0.0.1")
        kwargs["port"] = url_kwargs.pop("port", 6379)
        kwargs["connection_class"] = RunbookConnection
        if node is not None:
            kwargs["host"], kwargs["port"] = node
        elif target.sentinel is not None:
            from redis_runbook.sentinel import resolve_master  # imports this module

            kwargs["host"], kwargs["port"] = resolve_master(target, env)
    if scheme == "rediss":
        kwargs.update(
            connection_class=RunbookSSLConnection,
            ssl_ca_certs=str(target.tls_ca) if target.tls_ca else None,
            ssl_certfile=str(target.tls_cert) if target.tls_cert else None,
            ssl_keyfile=str(target.tls_key) if target.tls_key else None,
            ssl_cert_reqs="required" if target.tls_verify else "none",
            ssl_check_hostname=target.tls_verify and target.tls_check_hostname,
        )
    return kwargs


def make_client(
    target: TargetConfig,
    env: Mapping[str, str] | None = None,
    *,
    decode: bool = True,
    node: tuple[str, int] | None = None,
) -> redis.Redis:
    """A lazily-connecting client. Call `connect()` to connect eagerly and get
    a classified error instead of a redis-py one. `decode=False` returns bytes:
    use it wherever key names are read (keys need not be UTF-8)."""
    kwargs = client_kwargs(target, env, node)
    kwargs["decode_responses"] = decode
    connection_class = kwargs.pop("connection_class")
    unix_path = kwargs.pop("unix_socket_path", None)
    if unix_path:
        kwargs["path"] = unix_path
    pool = redis.ConnectionPool(connection_class=connection_class, **kwargs)
    client = redis.Redis.from_pool(pool)  # close() also closes the pool
    # Raw text for the replies we parse by field name ourselves.
    client.set_response_callback("INFO", lambda response, **_: response)
    client.set_response_callback("CLIENT LIST", lambda response, **_: response)
    return client


def connect(client: redis.Redis, where: str) -> float | None:
    """Open (and hand back to the pool) one connection, so that connect and
    handshake errors surface here, classified. Returns the handshake round trip
    in ms."""
    try:
        pool = client.connection_pool
        connection = pool.get_connection()
        pool.release(connection)
    except redis.RedisError as exc:
        raise classify(exc, where) from None
    return getattr(connection, "handshake_ms", None)


def classify(exc: BaseException, where: str) -> RunbookError:
    """Map a redis-py/socket/TLS error to a one-line RunbookError naming `where`."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, AuthenticationError) or "WRONGPASS" in text or "NOAUTH" in text:
        return AuthFailed(f"{where}: authentication failed: {text}")
    if isinstance(exc, NoPermissionError) or text.startswith("NOPERM"):
        return AuthFailed(
            f"{where}: permission denied: {text}",
            "grant the ACL user the commands redis-runbook needs (see docs/configuration.md)",
        )
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return TargetUnavailable(
                f"{where}: TLS handshake failed: {text}",
                "check [target] tls_ca/tls_cert/tls_key and that the server speaks TLS",
            )
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, redis.TimeoutError):
        return TargetUnavailable(f"{where}: no answer in time: {text}")
    if isinstance(exc, redis.ConnectionError):
        return TargetUnavailable(f"{where}: cannot connect: {text}")
    return RunbookError(f"{where}: {text}")
