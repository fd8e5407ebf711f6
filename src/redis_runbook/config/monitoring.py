"""The `[monitor]`, `[alerts]` and `[exporter]` sections (seed §6.2-§6.3): how often
the monitor runs, when an alert fires, repeats and resolves, where notifications go,
and where the Prometheus exporter listens.

    [monitor]
    interval_seconds = 60

    [alerts]
    repeat_interval_seconds = 14400   # remind every 4 h while an alert stays
    resolve_after_cycles = 2          # hysteresis: OK this many cycles before RESOLVED

    [alerts.smtp]
    host = "smtp.example.com"
    port = 587
    security = "starttls"             # or "ssl" (port 465), "none" (loopback relays)
    username = "alerts@example.com"
    password_file = "/etc/redis-runbook/smtp.pass"
    from_addr = "redis-runbook@example.com"
    to = ["devops@cerniq.app"]

    [[alerts.webhooks]]
    url_env = "SLACK_WEBHOOK_URL"     # a Slack URL is a secret: keep it out of the file
    format = "slack"

    [exporter]
    listen = "127.0.0.1:9121"

Passwords and webhook URLs come from env, a file or a command, like every secret.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator, model_validator

from redis_runbook.config.base import Section, new_list

_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+$")


def _one_source(section: BaseModel, what: str, keys: tuple[str, ...]) -> list[str]:
    given = [key for key in keys if getattr(section, key)]
    if len(given) > 1:
        raise ValueError(f"choose one {what} source, got {' and '.join(given)}")
    return given


class MonitorConfig(Section):
    """`monitor`: the loop interval and which checks besides the health checks run."""

    interval_seconds: float = Field(60.0, ge=1, le=86_400)
    queue_checks: bool = True
    history_days: int = Field(35, ge=1, le=3660)


class SmtpConfig(Section):
    """Email over SMTP. The password comes from env, a file or a command."""

    host: str = Field(min_length=1)
    port: int = Field(587, ge=1, le=65_535)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    password_command: list[str] | None = None
    tls_ca: Path | None = None
    from_addr: str = "redis-runbook@localhost"
    to: list[str] = Field(min_length=1)
    timeout_seconds: float = Field(10.0, gt=0, le=300)

    @field_validator("from_addr")
    @classmethod
    def _address(cls, address: str) -> str:
        if not _ADDRESS.match(address):
            raise ValueError(f"expected an email address, got {address!r}")
        return address

    @field_validator("to")
    @classmethod
    def _addresses(cls, addresses: list[str]) -> list[str]:
        bad = [a for a in addresses if not _ADDRESS.match(a)]
        if bad:
            raise ValueError(f"expected email addresses, got {bad!r}")
        return addresses

    @model_validator(mode="after")
    def _consistent(self) -> SmtpConfig:
        given = _one_source(self, "password", ("password_env", "password_file", "password_command"))
        if given and not self.username:
            raise ValueError(f"{given[0]} is set but username is not")
        if self.username and not given:
            raise ValueError("username is set but no password_env / _file / _command")
        if self.username and self.security == "none" and not _is_loopback(self.host):
            raise ValueError("refusing to send an SMTP password unencrypted: use starttls or ssl")
        if self.tls_ca is not None and not self.tls_ca.is_file():
            raise ValueError(f"tls_ca: expected an existing file, got {str(self.tls_ca)!r}")
        return self


class WebhookConfig(Section):
    """A JSON POST. `format = "slack"` sends Slack's `{"text": ...}` payload. The URL
    may be a secret (Slack's is): prefer url_env / url_file / url_command."""

    name: str | None = None
    url: str | None = None
    url_env: str | None = None
    url_file: Path | None = None
    url_command: list[str] | None = None
    format: Literal["json", "slack"] = "json"
    timeout_seconds: float = Field(10.0, gt=0, le=300)

    @field_validator("url")
    @classmethod
    def _http(cls, url: str | None) -> str | None:
        if url is not None and urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"expected an http:// or https:// URL, got {url!r}")
        return url

    @model_validator(mode="after")
    def _one_url(self) -> WebhookConfig:
        if not _one_source(self, "url", ("url", "url_env", "url_file", "url_command")):
            raise ValueError("set one of url, url_env, url_file, url_command")
        return self


class AlertsConfig(Section):
    """When an alert fires, repeats and resolves, and where notifications go."""

    smtp: SmtpConfig | None = None
    webhooks: list[WebhookConfig] = Field(default_factory=new_list)
    fire_after_cycles: int = Field(1, ge=1, le=100)
    for_cycles: dict[str, int] = Field(
        default_factory=lambda: {"queue_stale_jobs": 2, "queue_counts": 2}
    )
    resolve_after_cycles: int = Field(2, ge=1, le=100)
    repeat_interval_seconds: int = Field(14_400, ge=60)
    send_resolved: bool = True
    notify_unknown: bool = True
    retry_base_seconds: float = Field(30.0, gt=0, le=3600)
    retry_max_seconds: float = Field(1800.0, gt=0, le=86_400)
    give_up_after_hours: float = Field(24.0, gt=0, le=24 * 30)

    @field_validator("for_cycles")
    @classmethod
    def _positive(cls, cycles: dict[str, int]) -> dict[str, int]:
        bad = {k: v for k, v in cycles.items() if not 1 <= v <= 100}
        if bad:
            raise ValueError(f"expected cycles between 1 and 100, got {bad}")
        return cycles


def shown_webhook_url(url: str) -> str:
    """A webhook URL safe to print: scheme and host only (Slack's secret is the path)."""
    parts = urlsplit(url)
    rest = "/***" if parts.path.strip("/") or parts.query else ""
    return (
        f"{parts.scheme}://{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "") + rest
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_listen(listen: str) -> tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:9121`) -> (host, port); ValueError when malformed."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65_536:
        raise ValueError(f"expected HOST:PORT like 127.0.0.1:9121, got {listen!r}")
    return host.strip("[]"), int(port)


def is_loopback_listen(listen: str) -> bool:
    """True when the exporter would only be reachable from this host."""
    return _is_loopback(split_listen(listen)[0])


class ExporterConfig(Section):
    """`exporter`: where /metrics listens and how much each scrape may cost."""

    listen: str = "127.0.0.1:9121"
    queue_metrics: bool = True
    discovery_cache_seconds: float = Field(300.0, ge=0, le=86_400)
    queue_refresh_seconds: float = Field(15.0, ge=0, le=3600)
    backup_cache_seconds: float = Field(600.0, ge=0, le=86_400)

    @field_validator("listen")
    @classmethod
    def _listen(cls, listen: str) -> str:
        split_listen(listen)
        return listen
