"""`redis-runbook exporter [--listen HOST:PORT] [--listen-public]`: Prometheus /metrics."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Annotated

import typer

from redis_runbook.cli.context import globals_of
from redis_runbook.cli.render import err
from redis_runbook.errors import ConfigError, Refused


def exporter(
    ctx: typer.Context,
    listen: Annotated[
        str | None,
        typer.Option("--listen", help="HOST:PORT (default: [exporter] listen, 127.0.0.1:9121)."),
    ] = None,
    listen_public: Annotated[
        bool,
        typer.Option(
            "--listen-public", help="Allow a non-loopback address (metrics name every queue)."
        ),
    ] = False,
) -> None:
    """Serve Prometheus metrics: redis_exporter's core names, BullMQ queues, checks, backups."""
    from redis_runbook.config.monitoring import is_loopback_listen, split_listen
    from redis_runbook.monitoring.exporter import serve
    from redis_runbook.target import target_display

    config = globals_of(ctx).load().config
    address = listen or config.exporter.listen
    try:
        host, port = split_listen(address)
    except ValueError as exc:
        raise ConfigError(f"--listen: {exc}", "use --listen 127.0.0.1:9121") from None
    if not is_loopback_listen(address) and not listen_public:
        raise Refused(
            f"refusing to serve metrics on {address}: not a loopback address",
            "add --listen-public if the port is firewalled, or use --listen 127.0.0.1:9121",
        )
    try:
        server = serve(config, host, port)
    except OSError as exc:
        raise Refused(
            f"cannot listen on {address}: {exc.strerror}",
            "another exporter may hold the port: choose another with --listen HOST:PORT",
        ) from None

    def shut_down(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shut_down)
    signal.signal(signal.SIGINT, shut_down)
    err.print(
        f"exporter for {target_display(config.target)} on http://{address}/metrics",
        markup=False,
    )
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
