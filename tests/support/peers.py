"""Real notification peers on loopback for the monitor's tests: an SMTP server
(aiosmtpd) that requires STARTTLS before AUTH, and an HTTP receiver that records
every POST and can be told to fail."""

from __future__ import annotations

import errno
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from redis_runbook.lab.server import START_ATTEMPTS
from redis_runbook.ports import free_port
from tests.support.pki import make_ca, make_leaf


@dataclass
class Mailbox:
    """What the SMTP server accepted, and the logins it saw."""

    messages: list[Message] = field(default_factory=list)
    logins: list[tuple[str, bool]] = field(default_factory=list)

    def subjects(self) -> list[str]:
        """Every Subject, in arrival order."""
        return [str(m["Subject"]) for m in self.messages]


class _Handler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.box.messages.append(message_from_bytes(envelope.original_content))
        return "250 OK"


@dataclass
class SmtpPeer:
    """A running SMTP server: STARTTLS with a throwaway CA, AUTH LOGIN/PLAIN."""

    port: int
    ca: Path
    box: Mailbox
    controller: Controller


def start_smtp(directory: Path, username: str, password: str) -> SmtpPeer:
    """An SMTP server on 127.0.0.1 that accepts only `username`/`password`, and only
    after STARTTLS; stop it with `peer.controller.stop()`."""
    ca = make_ca(directory, "smtp-ca")
    cert, key = make_leaf(directory, "smtp", ca, "subjectAltName=IP:127.0.0.1,DNS:localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    box = Mailbox()

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == username
            and data.password.decode() == password
        )
        box.logins.append((data.login.decode() if isinstance(data, LoginPassword) else "?", ok))
        return AuthResult(success=ok, handled=False)  # aiosmtpd then sends 235 or 535

    for attempt in range(1, START_ATTEMPTS + 1):
        port = free_port()  # aiosmtpd binds it later: another port if it was taken meanwhile
        controller = Controller(
            _Handler(box),
            hostname="127.0.0.1",
            port=port,
            tls_context=context,
            require_starttls=True,
            authenticator=authenticate,
            auth_required=True,
            auth_require_tls=True,
        )
        try:
            controller.start()
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or attempt == START_ATTEMPTS:
                raise
            continue
        return SmtpPeer(port, ca[0], box, controller)
    raise AssertionError("unreachable")


@dataclass
class Inbox:
    """What the HTTP receiver got; `fail_with` makes it answer that status instead."""

    posts: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    fail_with: int | None = None
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, count: int, timeout: float) -> bool:
        """Block until `count` posts arrived (False on timeout)."""
        with self.arrived:
            return self.arrived.wait_for(lambda: len(self.posts) >= count, timeout)


@dataclass
class WebhookPeer:
    """A running HTTP receiver."""

    port: int
    inbox: Inbox
    server: ThreadingHTTPServer

    def url(self, path: str = "/hook") -> str:
        """Its URL."""
        return f"http://127.0.0.1:{self.port}{path}"


def start_webhook() -> WebhookPeer:
    """An HTTP server on 127.0.0.1 recording JSON POSTs; stop with `server.shutdown()`."""
    inbox = Inbox()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if inbox.fail_with is not None:
                self.send_response(inbox.fail_with)
                self.end_headers()
                return
            with inbox.arrived:
                inbox.posts.append(json.loads(body))
                inbox.paths.append(self.path)
                inbox.arrived.notify_all()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # bound here: no port race
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return WebhookPeer(server.server_address[1], inbox, server)


def running(peer: WebhookPeer) -> Iterator[WebhookPeer]:
    """Yield the peer, shut it down afterwards (for fixtures)."""
    try:
        yield peer
    finally:
        peer.server.shutdown()
        peer.server.server_close()
