"""How to reach Redis: URL (redis://, rediss://, unix://), TLS, ACL credentials,
timeouts, and a client factory whose connections identify themselves.

Every connection the tool opens does one pipelined handshake (one round trip):
AUTH (when credentials are configured), CLIENT SETNAME redis-runbook,
CLIENT NO-EVICT on (Redis >= 7.0; ignored where unknown or not permitted),
CLIENT SETINFO lib-name/lib-ver (>= 7.2; ignored elsewhere) and SELECT.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import socket
import ssl
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.connection import Connection, SSLConnection, UnixDomainSocketConnection, parse_url
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
)
from redis.retry import Retry

from redis_runbook import __version__
from redis_runbook.config import TargetConfig, secrets
from redis_runbook.errors import (
    AuthFailed,
    ConfigError,
    ReadOnlyReplica,
    RunbookError,
    ServerLoading,
    ServerOutOfMemory,
    TargetUnavailable,
    TLSMismatch,
)
from redis_runbook.redaction import redact_url


@dataclass(frozen=True)
class ReplyContext:
    """What a hint needs to know about the connection an error reply came from."""

    redis_cli: str
    username: str | None


class DatabaseOutOfRange(ResponseError):
    """SELECT refused the URL's db (the server has fewer databases)."""

    def __init__(self, db: int, reply: str, context: ReplyContext) -> None:
        super().__init__(reply)
        self.db = db
        self.runbook_context = context


@dataclass(frozen=True)
class Handshake:
    """What a new connection sends before its first command. `repr` hides the password."""

    client_name: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    db: int = 0
    # How hints spell redis-cli for this target (never with the password).
    redis_cli: str = "redis-cli"

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
            except (AuthenticationError, BusyLoadingError, ResponseError) as exc:
                # A server still LOADING refuses some optional commands: it still answers.
                required = command[0] in ("AUTH", "SELECT")
                if command[0] == "SELECT" and type(exc) is ResponseError:
                    exc = DatabaseOutOfRange(self._handshake.db, str(exc), self._context())
                if fatal is None and (required or isinstance(exc, AuthenticationError)):
                    fatal = exc
        # Also a Redis round trip: a server stalled by a busy script or a slow
        # command makes it wait, so health counts it as latency.
        self.handshake_ms = (time.perf_counter() - started) * 1000
        if fatal is not None:
            raise fatal
        conn._sock.settimeout(conn.socket_timeout)

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        """redis-py's read_response; an error reply carries how hints spell redis-cli
        for this target and the ACL user (never the password)."""
        try:
            return super().read_response(*args, **kwargs)  # type: ignore[misc]
        except redis.RedisError as exc:
            exc.runbook_context = self._context()  # type: ignore[attr-defined]
            raise

    def _context(self) -> ReplyContext:
        return ReplyContext(self._handshake.redis_cli, self._handshake.username)


class ServerExpectsTLS(redis.ConnectionError):
    """A plain (redis://) connection was dropped by a port that speaks TLS."""


class ServerSpeaksPlain(redis.ConnectionError):
    """A TLS (rediss://) handshake failed on a port that speaks plain RESP."""


PROBE_TIMEOUT_S = 1.0


def speaks_resp(host: str, port: int, timeout: float) -> bool:
    """True when a plain-text PING gets a RESP reply (`+PONG`, `-NOAUTH ...`,
    `-DENIED ...`): the port speaks plain Redis. No reply (a stopped or paused
    server, a TLS port) is False."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            first = sock.recv(1)
    except OSError:
        return False
    return first in (b"+", b"-")


def speaks_tls(host: str, port: int, timeout: float) -> bool:
    """True when a TLS ClientHello gets a TLS answer (a handshake, or an alert such as
    'certificate required'): the port speaks TLS. Certificates are not checked: this
    only asks which protocol the port speaks, and nothing is sent over it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw),
        ):
            return True
    except ssl.SSLError as exc:
        return "ALERT" in str(exc.reason or "")
    except OSError:
        return False


def _probe_timeout(connection: Any) -> float:
    return min(PROBE_TIMEOUT_S, connection.socket_connect_timeout or PROBE_TIMEOUT_S)


class RunbookConnection(_HandshakeMixin, Connection):
    """TCP connection with the pipelined handshake. A port that drops the handshake
    is asked whether it speaks TLS, to say so instead of "cannot connect"."""

    def on_connect_check_health(self, check_health: bool = True) -> None:
        try:
            super().on_connect_check_health(check_health)
        except redis.ConnectionError as exc:
            dropped = not isinstance(
                exc, AuthenticationError | AuthorizationError | BusyLoadingError
            )
            if dropped and speaks_tls(self.host, self.port, _probe_timeout(self)):
                raise ServerExpectsTLS(
                    f"{self.host}:{self.port} expects TLS but [target] url is redis:// "
                    f"(plain): the server dropped the connection ({exc})"
                ) from exc
            raise


class RunbookSSLConnection(_HandshakeMixin, SSLConnection):
    """TLS connection with the pipelined handshake. A failed TLS handshake asks the
    port whether it speaks plain Redis, to say so instead of "no answer in time"."""

    def _wrap_socket_with_ssl(self, sock: Any) -> Any:
        # redis-py runs the TLS handshake under socket_timeout (the command timeout);
        # it is part of connecting, so it gets the connect timeout.
        sock.settimeout(self.socket_connect_timeout)
        try:
            wrapped = super()._wrap_socket_with_ssl(sock)  # type: ignore[no-untyped-call]
        except OSError as exc:  # SSLError, a timeout, a reset
            if speaks_resp(self.host, self.port, _probe_timeout(self)):
                raise ServerSpeaksPlain(
                    f"{self.host}:{self.port} speaks plain Redis, not TLS, but [target] url "
                    f"is rediss:// (the TLS handshake failed: {exc})"
                ) from exc
            raise
        wrapped.settimeout(self.socket_timeout)
        return wrapped


class RunbookUnixConnection(_HandshakeMixin, UnixDomainSocketConnection):
    """Unix-socket connection with the pipelined handshake."""


def display_url(url: str) -> str:
    """The URL with any password replaced by `***`, safe to print and journal
    (also for a URL that does not parse)."""
    return redact_url(url)


def target_at(target: TargetConfig, address: str) -> TargetConfig:
    """The same target (credentials, db, TLS, timeouts) at another HOST:PORT, e.g. the
    replica a failover promoted."""
    host, _, port = address.rpartition(":")
    parts = urlsplit(target.url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (f"{userinfo}@" if userinfo else "") + f"{host}:{port}"
    return target.model_copy(update={"url": urlunsplit(parts._replace(netloc=netloc))})


def redis_cli_prefix(target: TargetConfig, node: tuple[str, int] | None = None) -> str:
    """`redis-cli` with the options that reach this target (`-h/-p` or `-s`, `-n`,
    `--user`, `--askpass` when a password is configured, `--tls` and its files), for
    hints to print. Never the password itself. `node` aims at one given host:port."""
    url = target.parsed_url
    args = ["redis-cli"]
    if url.socket is not None:
        args += ["-s", url.socket]
    else:
        host, port = node or (url.host or "127.0.0.1", url.port or 6379)
        args += ["-h", host, "-p", str(port)]
    if url.db:
        args += ["-n", str(url.db)]
    user = url.username or target.username
    if user:
        args += ["--user", user]
    if url.has_password or target.password_env or target.password_file or target.password_command:
        args.append("--askpass")  # redis-cli >= 7 prompts; or export REDISCLI_AUTH
    if url.scheme == "rediss":
        args.append("--tls")
        for option, path in (
            ("--cacert", target.tls_ca),
            ("--cert", target.tls_cert),
            ("--key", target.tls_key),
        ):
            if path is not None:
                args += [option, str(path)]
        if not target.tls_verify:
            args.append("--insecure")
    return shlex.join(args)


def client_cli(client: redis.Redis) -> str:
    """How hints spell redis-cli for the server a client of `make_client` reaches."""
    handshake = client.connection_pool.connection_kwargs.get("handshake")
    return handshake.redis_cli if isinstance(handshake, Handshake) else "redis-cli"


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
    password = url_kwargs.pop("password", None) or secrets.resolve(
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
        db=target.db,
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
            raise ValueError("a Sentinel target needs its master resolved: use target.make_client")
    # Hints name the node this client reaches (a Sentinel target: the master found).
    address = (kwargs["host"], kwargs["port"]) if scheme != "unix" else None
    kwargs["handshake"] = replace(handshake, redis_cli=redis_cli_prefix(target, address))
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


@contextlib.contextmanager
def redis_errors(where: str) -> Iterator[None]:
    """Turn redis-py errors raised inside the block into classified RunbookErrors
    (a one-line message naming `where`, a hint, an exit code), never a traceback."""
    try:
        yield
    except redis.RedisError as exc:
        raise classify(exc, where) from None


def connect(client: redis.Redis, where: str) -> float | None:
    """Open (and hand back to the pool) one connection, so that connect and
    handshake errors surface here, classified. Returns the handshake round trip
    in ms."""
    with redis_errors(where):
        pool = client.connection_pool
        connection = pool.get_connection()
        pool.release(connection)
    return getattr(connection, "handshake_ms", None)


_NOPERM_COMMAND = re.compile(r"run the '([^']+)' command")


def _no_permission_hint(text: str, context: ReplyContext | None) -> str:
    """Which ACL permission is missing (when the reply names the command) and how to
    look at the user's rights."""
    cli = context.redis_cli if context else "redis-cli"
    user = (context.username if context else None) or "default"
    missing = _NOPERM_COMMAND.search(text)
    if missing:  # NOPERM names the command
        lacks = grant = f"+{missing.group(1).lower().replace(' ', '|')}"
    else:  # a key or a channel was refused
        lacks, grant = "a key (~pattern) or channel (&pattern) permission", "~<pattern>"
    return (
        f"the ACL user {user} lacks {lacks}: see its rights with `{cli} ACL GETUSER {user}` "
        f"and grant with ACL SETUSER {user} {grant} (docs/configuration.md lists what "
        "redis-runbook needs)"
    )


def classify(exc: BaseException, where: str) -> RunbookError:
    """Map a redis-py/socket/TLS error to a one-line RunbookError naming `where`.
    Error replies are told apart by redis-py's exception class, not by their text."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    context: ReplyContext | None = getattr(exc, "runbook_context", None)
    cli = context.redis_cli if context else "redis-cli"
    if isinstance(exc, AuthenticationError | AuthorizationError):
        return AuthFailed(f"{where}: authentication failed: {text}")
    if isinstance(exc, NoPermissionError):
        return AuthFailed(f"{where}: permission denied: {text}", _no_permission_hint(text, context))
    if isinstance(exc, BusyLoadingError):
        return ServerLoading(f"{where}: Redis is loading its dataset: {text}")
    if isinstance(exc, ReadOnlyError):
        return ReadOnlyReplica(f"{where}: the target is a read-only replica: {text}")
    if isinstance(exc, OutOfMemoryError):
        return ServerOutOfMemory(f"{where}: out of memory (maxmemory reached): OOM {text}")
    if isinstance(exc, DatabaseOutOfRange):
        cli = cli.replace(f" -n {exc.db}", "")  # that SELECT is what fails
        return ConfigError(
            f"{where}: db {exc.db} of [target] url is out of range for this server: {text}",
            f"`{cli} CONFIG GET databases` says how many databases it has; "
            "use a lower /DB in [target] url",
        )
    if isinstance(exc, ServerExpectsTLS):
        return TLSMismatch(
            f"{where}: {text}",
            "use rediss:// in [target] url, with tls_ca (and tls_cert/tls_key when the "
            "server asks for client certificates): redis-runbook config show",
        )
    if isinstance(exc, ServerSpeaksPlain):
        return TLSMismatch(
            f"{where}: {text}",
            "use redis:// in [target] url and drop the tls_* keys, or point it at the "
            "server's tls-port: redis-runbook config show",
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
