"""Configuration: pydantic models, TOML loading and `REDIS_RUNBOOK_*` overrides.

With no file the defaults describe the seed runbook's deployment: Redis 8.4 in Docker
Compose (service `redis`), AOF everysec, noeviction, maxmemory 8gb, data in
/data/redis-data owned by 999:999, the §1.2 data categories and the §6.1 thresholds.

Lookup order: `--config`, `$REDIS_RUNBOOK_CONFIG`, `./redis-runbook.toml`,
`/etc/redis-runbook/redis-runbook.toml`. Environment overrides use `__` between levels:
`REDIS_RUNBOOK_TARGET__URL=redis://...`, `REDIS_RUNBOOK_THRESHOLDS__MEMORY_PCT__WARNING=60`.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from redis_runbook.config.backup import BackupConfig
from redis_runbook.config.base import Section, new_list
from redis_runbook.config.errors import describe_validation_error
from redis_runbook.config.monitoring import AlertsConfig, ExporterConfig, MonitorConfig
from redis_runbook.config.reconstruct import ReconstructConfig
from redis_runbook.config.reconstruct import Source as Source
from redis_runbook.errors import ConfigError
from redis_runbook.globs import common_key, prefix_glob
from redis_runbook.target_url import URL_SCHEMES as URL_SCHEMES
from redis_runbook.target_url import TargetUrl, parse_target_url
from redis_runbook.units import parse_size

ENV_PREFIX = "REDIS_RUNBOOK_"
ENV_CONFIG = "REDIS_RUNBOOK_CONFIG"
DEFAULT_PATHS = (Path("redis-runbook.toml"), Path("/etc/redis-runbook/redis-runbook.toml"))


def _host_port(address: str) -> str:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65_536:
        raise ValueError(f"expected HOST:PORT like 127.0.0.1:26379, got {address!r}")
    return address


class SentinelConfig(Section):
    """A Sentinel-managed deployment: the master's service name and the Sentinels to
    ask. Sentinels may have their own ACL user and password (the data nodes use the
    [target] ones)."""

    service: str = Field(min_length=1)
    addresses: list[str] = Field(min_length=1)
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    password_command: list[str] | None = None

    @field_validator("addresses")
    @classmethod
    def _addresses(cls, addresses: list[str]) -> list[str]:
        return [_host_port(a) for a in addresses]

    @model_validator(mode="after")
    def _one_password(self) -> SentinelConfig:
        given = [
            k for k in ("password_env", "password_file", "password_command") if getattr(self, k)
        ]
        if len(given) > 1:
            raise ValueError(f"choose one password source, got {' and '.join(given)}")
        return self


class TargetConfig(Section):
    """How to reach Redis. The password never lives in this file: it comes from an
    environment variable, a file, or a command's stdout (first non-empty source)."""

    url: str = "redis://127.0.0.1:6379/0"
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    password_command: list[str] | None = None
    connect_timeout: float = Field(2.0, gt=0, le=120)
    command_timeout: float = Field(5.0, gt=0, le=600)
    client_name: str = "redis-runbook"
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_verify: bool = True
    tls_check_hostname: bool = True
    sentinel: SentinelConfig | None = None
    replicas: list[str] = Field(default_factory=new_list)

    @field_validator("replicas")
    @classmethod
    def _replica_addresses(cls, replicas: list[str]) -> list[str]:
        return [_host_port(a) for a in replicas]

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        parse_target_url(url)  # scheme, host, port, db, socket path; the password hidden
        return url

    @field_validator("client_name")
    @classmethod
    def _valid_client_name(cls, name: str) -> str:
        if not name or re.search(r"\s", name):
            raise ValueError(f"expected a client name without spaces, got {name!r}")
        return name

    @field_validator("password_command")
    @classmethod
    def _non_empty_command(cls, argv: list[str] | None) -> list[str] | None:
        if argv is not None and not argv:
            raise ValueError("expected a command as a list of arguments, got []")
        return argv

    @model_validator(mode="after")
    def _tls_consistent(self) -> TargetConfig:
        tls_files = {"tls_ca": self.tls_ca, "tls_cert": self.tls_cert, "tls_key": self.tls_key}
        for key, path in tls_files.items():
            if path is None:
                continue
            if self.scheme != "rediss":
                raise ValueError(f"{key} is set but url is not rediss:// (TLS)")
            if not path.is_file():
                raise ValueError(f"{key}: expected an existing file, got {str(path)!r}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: set both or neither")
        sources = [
            name
            for name, value in (
                ("password_env", self.password_env),
                ("password_file", self.password_file),
                ("password_command", self.password_command),
                ("url password", urlsplit(self.url).password),
            )
            if value
        ]
        if len(sources) > 1:
            raise ValueError(f"choose one password source, got {' and '.join(sources)}")
        if self.password_file is not None and not self.password_file.is_file():
            raise ValueError(
                f"password_file: expected an existing file, got {str(self.password_file)!r}"
            )
        if self.sentinel is not None and self.scheme == "unix":
            raise ValueError("sentinel: the data nodes must be reached over redis:// or rediss://")
        return self

    @property
    def scheme(self) -> str:
        """URL scheme: redis, rediss or unix."""
        return urlsplit(self.url).scheme

    @property
    def parsed_url(self) -> TargetUrl:
        """The URL's parts (host, port or socket, db, user)."""
        return parse_target_url(self.url)

    @property
    def db(self) -> int:
        """The database number (the URL's /N or ?db=N; 0 when absent)."""
        return self.parsed_url.db


class ServiceConfig(Section):
    """How the Redis server is run and controlled (used by recovery procedures)."""

    kind: Literal["compose", "systemd", "process"] = "compose"
    compose_file: Path | None = None
    compose_service: str = "redis"
    systemd_unit: str = "redis-server"
    data_dir: Path = Path("/data/redis-data")
    container_data_dir: Path = Path("/data")
    owner: str = "999:999"
    redis_conf: Path | None = None
    pid_file: Path | None = None
    log_file: Path | None = None

    @field_validator("owner")
    @classmethod
    def _uid_gid(cls, owner: str) -> str:
        if not re.fullmatch(r"\d+:\d+", owner):
            raise ValueError(f"expected uid:gid like 999:999, got {owner!r}")
        return owner


class ServerExpectations(Section):
    """How the server is meant to be configured; health flags drift from this."""

    appendonly: bool = True
    appendfsync: Literal["always", "everysec", "no"] = "everysec"
    maxmemory: str = "8gb"
    rdb_schedule: Literal["daily", "hourly", "none"] = "daily"

    @field_validator("maxmemory")
    @classmethod
    def _size(cls, value: str) -> str:
        parse_size(value)
        return value

    @property
    def maxmemory_bytes(self) -> int:
        """maxmemory in bytes."""
        return parse_size(self.maxmemory)


class Band(Section):
    """A warning/critical pair. A value above `warning` is WARNING, above `critical`
    is CRITICAL (strictly greater, so 70 % with a 70 % warning is still OK)."""

    warning: float = Field(ge=0)
    critical: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Band:
        if self.warning > self.critical:
            raise ValueError(
                f"warning ({self.warning:g}) must not be above critical ({self.critical:g})"
            )
        return self


class PercentBand(Band):
    """A Band whose values are percentages (0-100)."""

    warning: float = Field(ge=0, le=100)
    critical: float = Field(ge=0, le=100)


def _band(warning: float, critical: float) -> Any:
    return Field(default_factory=lambda: Band(warning=warning, critical=critical))


class Thresholds(Section):
    """Health thresholds; the defaults are the seed's §6.1 table."""

    latency_ms: Band = _band(1, 10)
    memory_pct: PercentBand = Field(default_factory=lambda: PercentBand(warning=70, critical=85))
    connected_clients: Band = _band(200, 500)
    blocked_clients: Band = _band(100, 400)
    evicted_keys: Band = _band(0, 100)
    rejected_connections: Band = _band(0, 100)
    aof_rewrite_seconds: Band = _band(10, 60)
    rdb_age_hours: Band = _band(26, 50)
    fragmentation_ratio: Band = _band(1.5, 3.0)
    fragmentation_min_bytes: int = Field(100 * 1024 * 1024, ge=0)
    oom_rejections: Band = _band(0, 100)
    replica_lag_seconds: Band = _band(5, 30)
    replica_lag_bytes: Band = _band(1024 * 1024, 64 * 1024 * 1024)
    queue_stale_jobs: Band = _band(0, 100)
    queue_waiting_jobs: Band = _band(10_000, 100_000)
    queue_waiting_growth_per_min: Band = _band(500, 5000)
    queue_failed_per_min: Band = _band(10, 100)


class Category(Section):
    """A data category of the keyspace (seed §1.2)."""

    name: str
    pattern: str
    persistence: Literal["aof", "rdb", "none", "n/a"] = "aof"
    priority: Literal["critical", "high", "medium", "low", "n/a"] = "high"
    rebuildable: bool = False


def _seed_categories() -> list[Category]:
    return [
        Category(name="bullmq", pattern="bull:*", persistence="aof", priority="critical"),
        Category(name="session", pattern="session:*", persistence="aof", priority="high"),
        Category(
            name="ratelimit",
            pattern="ratelimit:*",
            persistence="none",
            priority="low",
            rebuildable=True,
        ),
        Category(
            name="cache", pattern="cache:*", persistence="none", priority="low", rebuildable=True
        ),
        Category(name="pubsub", pattern="channel:*", persistence="n/a", priority="n/a"),
    ]


class ExpectedScheduler(Section):
    """A job scheduler (repeatable job) the application registers at start-up and a
    queue must have: the monitor and `checklist daily` flag it when it is missing."""

    queue: str
    id: str
    # The queue's prefix; by default the first of `[bullmq] prefixes`.
    prefix: str | None = None

    @field_validator("queue", "id", "prefix")
    @classmethod
    def _non_empty(cls, value: str | None) -> str | None:
        if value is not None and not value:
            raise ValueError("expected a non-empty string")
        return value


class BullMQConfig(Section):
    """Where BullMQ queues live. Prefixes may contain `:` or hash tags like `{bull}`."""

    prefixes: list[str] = Field(default_factory=lambda: ["bull"])
    layout: Literal["auto", "v5", "v6"] = "auto"
    # The workers' `maxStalledCount` (BullMQ's default 1), which `queues recover-stale
    # --count-as-stall` applies as BullMQ's stalled check does: a job whose stalled
    # counter goes above it is marked to fail (`defa`). Per queue by the name `queues
    # status` shows (`name`, or `prefix:name` for a prefix other than `bull`).
    max_stalled_count: int = Field(1, ge=0)
    max_stalled_count_per_queue: dict[str, int] = Field(default_factory=dict)
    # `[[bullmq.expected_schedulers]]`: queue, id (the upsertJobScheduler id), prefix.
    expected_schedulers: list[ExpectedScheduler] = Field(default_factory=new_list)

    @field_validator("prefixes")
    @classmethod
    def _non_empty(cls, prefixes: list[str]) -> list[str]:
        if not prefixes or any(not p for p in prefixes):
            raise ValueError(f"expected a non-empty list of non-empty prefixes, got {prefixes!r}")
        return prefixes

    @field_validator("max_stalled_count_per_queue")
    @classmethod
    def _stall_limits(cls, limits: dict[str, int]) -> dict[str, int]:
        bad = {name: n for name, n in limits.items() if not name or n < 0}
        if bad:
            raise ValueError(
                f"expected queue = a whole number >= 0 (BullMQ's maxStalledCount), got {bad!r}"
            )
        return limits

    def expected(self) -> list[tuple[str, str, str]]:
        """(prefix, queue, id) of every expected scheduler, the prefix filled in."""
        return [(e.prefix or self.prefixes[0], e.queue, e.id) for e in self.expected_schedulers]

    def max_stalled_for(self, queue: str) -> int:
        """The stall limit of the queue `queue` (its display name)."""
        return self.max_stalled_count_per_queue.get(queue, self.max_stalled_count)


def default_state_dir(env: Mapping[str, str] | None = None) -> Path:
    """$XDG_STATE_HOME/redis-runbook, else $HOME/.local/state/redis-runbook, read
    from `env` (the process environment by default)."""
    env = os.environ if env is None else env
    home = env.get("HOME") or str(Path.home())
    return Path(env.get("XDG_STATE_HOME") or str(Path(home) / ".local" / "state")) / "redis-runbook"


class RunbookConfig(Section):
    """Where the tool keeps its own state: the journal and the procedure locks."""

    state_dir: Path = Field(default_factory=default_state_dir)
    lock_ttl_seconds: int = Field(3600, ge=60, le=86_400)


class Config(Section):
    """The whole configuration."""

    target: TargetConfig = Field(default_factory=TargetConfig)
    service: ServiceConfig = Field(default_factory=ServiceConfig)
    server: ServerExpectations = Field(default_factory=ServerExpectations)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    categories: list[Category] = Field(default_factory=_seed_categories)
    bullmq: BullMQConfig = Field(default_factory=BullMQConfig)
    runbook: RunbookConfig = Field(default_factory=RunbookConfig)
    reconstruct: ReconstructConfig = Field(default_factory=ReconstructConfig)
    backup: BackupConfig = Field(default_factory=BackupConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    exporter: ExporterConfig = Field(default_factory=ExporterConfig)

    @field_validator("categories")
    @classmethod
    def _unique_names(cls, categories: list[Category]) -> list[Category]:
        names = [c.name for c in categories]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"category names must be unique, got duplicates {duplicates}")
        return categories

    @model_validator(mode="after")
    def _rebuildable_reaches_nothing_critical(self) -> Config:
        """A rebuildable category may be purged: its pattern must not be able to
        match a key of a non-rebuildable category or under a BullMQ prefix,
        whatever the order of the list (issue 11: `*` listed first took bull:*)."""
        problems = [
            InitErrorDetails(
                type=PydanticCustomError("category_overlap", "{text}", {"text": text}),
                loc=("categories", index, "pattern"),
                input=category.pattern,
            )
            for index, category in enumerate(self.categories)
            if category.rebuildable
            for text in _overlaps_of(category, self.categories, self.bullmq.prefixes)
        ]
        if problems:
            raise ValidationError.from_exception_data("Config", problems)
        return self


def _overlaps_of(category: Category, categories: list[Category], prefixes: list[str]) -> list[str]:
    """What the rebuildable `category`'s pattern can reach that it must not."""
    protected = [
        (f"non-rebuildable category {c.name!r}", c.pattern) for c in categories if not c.rebuildable
    ]
    protected += [
        (f"[bullmq] prefix {p!r}", prefix_glob(p))
        for p in prefixes
        if prefix_glob(p) not in {pattern for _, pattern in protected}
    ]
    texts = []
    for what, pattern in protected:
        key = common_key(category.pattern, pattern)
        if key is not None:
            example = key.decode("utf-8", "backslashreplace")
            texts.append(
                f"rebuildable category {category.name!r} (pattern {category.pattern!r}) can "
                f"match keys of {what} (pattern {pattern!r}), e.g. {example!r}: a purge of "
                f"{category.name!r} would delete them; narrow the pattern so the two cannot "
                f"match a common key, or set rebuildable = false"
            )
    return texts


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config and where it came from (None: built-in defaults)."""

    config: Config
    path: Path | None
    env_overrides: tuple[str, ...] = ()


def find_config_path(explicit: Path | None, env: Mapping[str, str]) -> Path | None:
    """The config file to use, following the documented lookup order."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(
                f"config file not found: {explicit}", "redis-runbook --config PATH config validate"
            )
        return explicit
    from_env = env.get(ENV_CONFIG)
    if from_env:
        path = Path(from_env)
        if not path.is_file():
            raise ConfigError(
                f"config file not found: {path} (from ${ENV_CONFIG})",
                f"unset {ENV_CONFIG} or point it at an existing file",
            )
        return path
    return next((p for p in DEFAULT_PATHS if p.is_file()), None)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def _env_value(text: str) -> Any:
    if text[:1] in '[{"':
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text


def apply_env_overrides(raw: dict[str, Any], env: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    """Merge `REDIS_RUNBOOK_A__B=value` into raw["a"]["b"]; returns loc -> env var."""
    applied: dict[tuple[str, ...], str] = {}
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name == ENV_CONFIG:
            continue
        path = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        if not all(path):
            raise ConfigError(f"env {name}: expected REDIS_RUNBOOK_SECTION__KEY, got {name!r}")
        node = raw
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"env {name}: {'.'.join(path[:-1])} is not a section")
            node = child
        node[path[-1]] = _env_value(env[name])
        applied[path] = name
    return applied


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge tables so that setting one key of a section keeps the other defaults."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(explicit: Path | None = None, env: Mapping[str, str] | None = None) -> LoadedConfig:
    """Read, merge and validate the configuration. Raises ConfigError naming the
    file (or env var), the key, what was expected and what was found."""
    env = os.environ if env is None else env
    path = find_config_path(explicit, env)
    raw = _read_toml(path) if path else {}
    applied = apply_env_overrides(raw, env)
    try:
        defaults = Config().model_dump(exclude_none=True)
        defaults["runbook"]["state_dir"] = default_state_dir(env)
        config = Config.model_validate(_merge(defaults, raw))
    except ValidationError as exc:
        problems = describe_validation_error(exc, Config, str(path or "defaults"), applied)
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigError(problems[0] + more, problems=problems) from None
    return LoadedConfig(config, path, tuple(applied.values()))
