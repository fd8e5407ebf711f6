"""Service control: one contract, one backend per service manager."""

from __future__ import annotations

from redis_runbook.config import Config
from redis_runbook.service.base import RunState, Service, ServiceError, ServiceState

__all__ = ["RunState", "Service", "ServiceError", "ServiceState", "make_service"]


def make_service(config: Config) -> Service:
    """The backend named by `[service] kind`."""
    kind = config.service.kind
    if kind == "process":
        from redis_runbook.service.process import ProcessService

        return ProcessService(config.service, config.target)
    if kind == "systemd":
        from redis_runbook.service.systemd import SystemdService

        return SystemdService(config.service, config.target)
    from redis_runbook.service.compose import ComposeService

    return ComposeService(config.service, config.target)
