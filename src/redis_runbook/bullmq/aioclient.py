"""A `redis.asyncio` client for the Python `bullmq` package, built from `[target]`.

`bullmq.Queue` given a dict of options makes its own client with 20 retries and
exponential backoff: a down Redis would hang the tool for minutes. Given a client
instance it uses that one, so we hand it ours: the configured URL, TLS and ACL
credentials, the connect and command timeouts, no retries, our client name.

redis-py's asyncio connections pack commands in pure Python (its sync ones use
hiredis); for `addBulk` that packing was a third of the client's CPU, so these
connections pack with `hiredis.pack_command` (hiredis comes with redis[hiredis]). The bytes
on the wire are the same.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import DataError

from redis_runbook.config import TargetConfig
from redis_runbook.target import client_kwargs


class _HiredisPacking:
    """Packs with hiredis (C) instead of redis-py's Python loop."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str):
            args = (*args[0].encode().split(), *args[1:])
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:
            raise DataError(str(exc)) from None


class FastConnection(_HiredisPacking, Connection):
    """TCP."""


class FastSSLConnection(_HiredisPacking, SSLConnection):
    """TLS."""


class FastUnixConnection(_HiredisPacking, UnixDomainSocketConnection):
    """Unix socket."""


def async_client(
    target: TargetConfig,
    env: Mapping[str, str] | None = None,
    *,
    reply_timeout: bool = True,
) -> aioredis.Redis:
    """A lazily-connecting asyncio client with decoded responses (bullmq needs
    them). Resolves the password from its source; raises SecretError.
    `reply_timeout=False` drops redis-py's per-reply timer (an asyncio timeout
    context for each of a pipeline's replies): the caller must then bound every
    call itself (`asyncio.timeout`)."""
    kwargs = client_kwargs(target, os.environ if env is None else env)
    handshake = kwargs["handshake"]
    options: dict[str, Any] = {
        "username": handshake.username,
        "password": handshake.password,
        "db": handshake.db,
        "client_name": handshake.client_name,
        "socket_connect_timeout": target.connect_timeout,
        "socket_timeout": target.command_timeout if reply_timeout else None,
        "retry": Retry(NoBackoff(), 0),
        "decode_responses": True,
    }
    if target.scheme == "unix":
        options.update(connection_class=FastUnixConnection, path=kwargs["unix_socket_path"])
    else:
        options.update(connection_class=FastConnection, host=kwargs["host"], port=kwargs["port"])
    if target.scheme == "rediss":
        options.update(
            connection_class=FastSSLConnection,
            ssl_ca_certs=kwargs["ssl_ca_certs"],
            ssl_certfile=kwargs["ssl_certfile"],
            ssl_keyfile=kwargs["ssl_keyfile"],
            ssl_cert_reqs=kwargs["ssl_cert_reqs"],
            ssl_check_hostname=kwargs["ssl_check_hostname"],
        )
    pool = aioredis.ConnectionPool(**options)
    return aioredis.Redis.from_pool(pool)
