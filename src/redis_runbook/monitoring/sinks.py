"""Where notifications go: email over SMTP and a JSON webhook (generic, or Slack's
`{"text": ...}`). Each sink sends one notification or raises SinkError with one
line that never carries a password or a webhook URL's secret path."""

from __future__ import annotations

import json
import smtplib
import ssl
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import urlsplit

from redis_runbook.config import secrets
from redis_runbook.config.monitoring import AlertsConfig, SmtpConfig, WebhookConfig
from redis_runbook.errors import RunbookError
from redis_runbook.monitoring.alerting import Notification


class SinkError(RunbookError):
    """A notification could not be delivered (it stays queued for a retry)."""


class Sink(ABC):
    """One destination."""

    #: A stable name for the outbox and the logs (never holds a secret).
    name: str

    @abstractmethod
    def send(self, notification: Notification) -> None:
        """Deliver one notification (raises SinkError)."""


def body_text(n: Notification) -> str:
    """The plain-text message shared by email and Slack."""
    lines = [
        n.headline,
        "",
        f"status:    {n.status}" + (" (resolved)" if n.kind == "RESOLVED" else ""),
        f"value:     {n.value}",
        f"threshold: {n.threshold}",
    ]
    if n.since is not None:
        lines.append(f"since:     {formatdate(n.since, usegmt=True)}")
    if n.hint:
        lines += ["", f"next: {n.hint}"]
    return "\n".join(lines) + "\n"


class SmtpSink(Sink):
    """Email over SMTP: STARTTLS (587), implicit TLS (465) or plain (a loopback relay)."""

    def __init__(self, config: SmtpConfig, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.env = env
        self.name = f"smtp:{config.host}:{config.port}"

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(
            cafile=str(self.config.tls_ca) if self.config.tls_ca else None
        )

    def message(self, n: Notification) -> EmailMessage:
        """The email for one notification."""
        msg = EmailMessage()
        msg["Subject"] = f"[redis-runbook] {n.headline}"[:200]
        msg["From"] = self.config.from_addr
        msg["To"] = ", ".join(self.config.to)
        msg["Date"] = formatdate(n.at, usegmt=True)
        msg["Message-ID"] = make_msgid(domain="redis-runbook")
        msg.set_content(body_text(n))
        return msg

    def send(self, notification: Notification) -> None:
        """Connect, (STARTTLS,) log in when configured, send, quit."""
        c = self.config
        try:
            password = secrets.resolve(
                "alerts.smtp",
                env_var=c.password_env,
                file=c.password_file,
                command=c.password_command,
                env=self.env,
            )
            if c.security == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    c.host, c.port, timeout=c.timeout_seconds, context=self._context()
                )
            else:
                smtp = smtplib.SMTP(c.host, c.port, timeout=c.timeout_seconds)
            with smtp:
                if c.security == "starttls":
                    smtp.starttls(context=self._context())
                if c.username and password is not None:
                    smtp.login(c.username, password)
                smtp.send_message(self.message(notification))
        except RunbookError as exc:
            raise SinkError(f"{self.name}: {exc.message}") from None
        except smtplib.SMTPAuthenticationError as exc:
            raise SinkError(f"{self.name}: login refused ({exc.smtp_code})") from None
        except smtplib.SMTPResponseException as exc:
            raise SinkError(f"{self.name}: server said {exc.smtp_code}") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise SinkError(f"{self.name}: {type(exc).__name__}: {_oneline(exc)}") from None


class WebhookSink(Sink):
    """A JSON POST; a non-2xx answer is a failure."""

    def __init__(
        self, config: WebhookConfig, index: int, env: Mapping[str, str] | None = None
    ) -> None:
        self.config = config
        self.env = env
        self.name = f"webhook:{config.name or index}"

    def _url(self) -> str:
        c = self.config
        if c.url:
            return c.url
        url = secrets.resolve(
            f"alerts.webhooks[{self.name}]",
            env_var=c.url_env,
            file=c.url_file,
            command=c.url_command,
            env=self.env,
            name="url",
        )
        assert url is not None  # the config requires one source
        if urlsplit(url).scheme not in ("http", "https"):
            raise SinkError(f"{self.name}: the configured URL is not http(s)")
        return url

    def payload(self, n: Notification) -> dict[str, object]:
        """Slack's `{"text": ...}` or the notification's fields."""
        if self.config.format == "slack":
            return {"text": body_text(n)}
        return {"source": "redis-runbook", **n.to_json()}

    def send(self, notification: Notification) -> None:
        """POST the payload."""
        try:
            url = self._url()
            request = urllib.request.Request(  # noqa: S310 (scheme checked above)
                url,
                data=json.dumps(self.payload(notification)).encode(),
                headers={"Content-Type": "application/json", "User-Agent": "redis-runbook"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=self.config.timeout_seconds) as answer:  # noqa: S310
                answer.read(1024)
        except RunbookError as exc:
            raise SinkError(f"{self.name}: {exc.message}") from None
        except urllib.error.HTTPError as exc:
            raise SinkError(f"{self.name}: HTTP {exc.code}") from None
        except (TimeoutError, urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SinkError(f"{self.name}: {_oneline(reason)}") from None


def _oneline(exc: object) -> str:
    text = str(exc).splitlines()
    return text[0] if text else type(exc).__name__


def make_sinks(config: AlertsConfig, env: Mapping[str, str] | None = None) -> list[Sink]:
    """Every configured sink, SMTP first."""
    sinks: list[Sink] = [SmtpSink(config.smtp, env)] if config.smtp else []
    sinks += [WebhookSink(w, i, env) for i, w in enumerate(config.webhooks)]
    return sinks
