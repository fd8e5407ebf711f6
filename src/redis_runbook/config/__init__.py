"""Configuration: one TOML file plus `REDIS_RUNBOOK_*` overrides, validated by
pydantic models, one module per topic.

    base.py         Section, the base of every section (unknown keys are errors)
    model.py        target, service, server, thresholds, categories, runbook; Config
                    and load_config (file lookup, env overrides)
    backup.py       [backup]            monitoring.py   [monitor] [alerts] [exporter]
    reconstruct.py  [reconstruct]       errors.py       validation errors in one line
    secrets.py      secret sources (env, file, command), never echoed
    toml.py         the TOML writer (`config show`, the lab's config)

The names most code needs are re-exported here: `from redis_runbook.config import Config`.
"""

from redis_runbook.config.model import (
    Band,
    Category,
    Config,
    LoadedConfig,
    RunbookConfig,
    SentinelConfig,
    ServerExpectations,
    ServiceConfig,
    Source,
    TargetConfig,
    Thresholds,
    load_config,
)

__all__ = [
    "Band",
    "Category",
    "Config",
    "LoadedConfig",
    "RunbookConfig",
    "SentinelConfig",
    "ServerExpectations",
    "ServiceConfig",
    "Source",
    "TargetConfig",
    "Thresholds",
    "load_config",
]
