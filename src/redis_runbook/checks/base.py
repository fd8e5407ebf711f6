"""What a health check reads (`Context`) and the helpers every check uses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from redis_runbook.config import Band, Config
from redis_runbook.replies import number
from redis_runbook.snapshot import Snapshot
from redis_runbook.status import CheckResult, Status
from redis_runbook.target import redis_cli_prefix
from redis_runbook.units import format_size


@dataclass(frozen=True)
class Context:
    """What a check reads: the snapshot and the configuration."""

    snapshot: Snapshot
    config: Config

    def field(self, name: str) -> str | None:
        """A raw INFO field, or None."""
        return self.snapshot.info.get(name)

    def num(self, name: str, default: float | None = None) -> float | None:
        """A numeric INFO field, or `default`."""
        return number(self.snapshot.info, name, default)

    @property
    def cli(self) -> str:
        """`redis-cli` aimed at the target, for hints (never with the password)."""
        return self.snapshot.redis_cli or redis_cli_prefix(self.config.target)


CheckFn = Callable[[Context], CheckResult]


def band_status(value: float, band: Band) -> Status:
    """CRITICAL above band.critical, WARNING above band.warning, else OK."""
    if value > band.critical:
        return Status.CRITICAL
    if value > band.warning:
        return Status.WARNING
    return Status.OK


def band_text(band: Band, unit: str = "") -> str:
    """`warn > 70%, crit > 85%` style threshold text; bytes (unit ` B`) as sizes:
    `warn > 1 MiB, crit > 64 MiB`, not `6.71089e+07 B`."""
    if unit.strip() == "B":
        return f"warn > {format_size(band.warning)}, crit > {format_size(band.critical)}"
    return f"warn > {band.warning:g}{unit}, crit > {band.critical:g}{unit}"


def banded(
    name: str,
    value: float,
    band: Band,
    *,
    shown: str,
    summary: str,
    hint: str,
    unit: str = "",
) -> CheckResult:
    """The result of a check that compares one number with a warning/critical band;
    `hint` is shown only when the status is not OK."""
    status = band_status(value, band)
    return CheckResult(
        name=name,
        status=status,
        value=shown,
        threshold=band_text(band, unit),
        summary=summary,
        hint=None if status is Status.OK else hint,
        metric=value,
    )


def unknown(name: str, ctx: Context, missing: str) -> CheckResult:
    """The result for a check whose input the server did not give us."""
    denied = "; ".join(f"{cmd}: {err}" for cmd, err in ctx.snapshot.denied.items())
    return CheckResult(
        name=name,
        status=Status.UNKNOWN,
        value="n/a",
        threshold="-",
        summary=f"cannot evaluate: {missing} not available" + (f" ({denied})" if denied else ""),
        hint="allow the tool's ACL user INFO, CONFIG GET, SLOWLOG, LATENCY and CLIENT LIST "
        "(see docs/configuration.md)",
    )
