"""The data files of a server, found and checked offline: where they are
(redis.conf, a live CONFIG GET, or Redis' defaults), and what redis-check-aof /
redis-check-rdb say about them. Read-only; shared by diagnose and recover aof."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from redis_runbook.config import Category, Config
from redis_runbook.errors import RunbookError
from redis_runbook.persistence.aof import AofLayout, discover_aof
from redis_runbook.persistence.aof_check import AofCheck, check_aof
from redis_runbook.persistence.layout import (
    DataLayout,
    PersistenceError,
    layout_from_settings,
    read_redis_conf,
)
from redis_runbook.persistence.outcomes import Comparison, compare_outcomes, what_the_cut_drops
from redis_runbook.persistence.rdb import (
    RdbCheck,
    RdbHeader,
    check_rdb,
    installed_redis_version,
    read_rdb_header,
    with_trailer,
)
from redis_runbook.persistence.resp import CutCommands
from redis_runbook.service.base import Service


@dataclass
class OfflineEvidence:
    """Checks of the data files of a server that is not running."""

    aof: AofLayout | None = None
    aof_check: AofCheck | None = None
    aof_error: str | None = None
    rdb_header: RdbHeader | None = None
    rdb_check: RdbCheck | None = None
    rdb_error: str | None = None
    server_version: str | None = None
    cut: CutCommands | None = None
    comparison: Comparison | None = None


def data_layout(config: Config, live: Mapping[str, str], notes: list[str]) -> DataLayout:
    """Where the data files are: redis.conf when the tool can read it, else what a
    live server says (`live`: CONFIG GET replies), else Redis' defaults under
    [service] data_dir. Anything worth telling the operator is added to `notes`."""
    service = config.service
    settings: dict[str, str] = {}
    source = "defaults"
    if service.redis_conf is not None:
        try:
            settings = read_redis_conf(service.redis_conf)
            source = str(service.redis_conf)
        except PersistenceError as exc:
            notes.append(f"{exc.message}: file locations are Redis' defaults")
    if live.get("appendonly") and "appendonly" not in settings:
        settings["appendonly"] = live["appendonly"]
    layout = layout_from_settings(
        service.data_dir, settings, source, prefer_conf_dir=service.kind == "process"
    )
    if layout.data_dir != service.data_dir:
        notes.append(
            f"redis.conf sets dir {layout.data_dir} ([service] data_dir is "
            f"{service.data_dir}): the files were looked for where Redis keeps them"
        )
    return layout


def in_service(service: Service, layout: DataLayout, path: Path) -> Path:
    """`path` (on the host) as `run_tool` sees it."""
    if service.data_dir_in_service == service.data_dir:
        return path
    return service.data_dir_in_service / layout.relative(path)


def offline_checks(
    service: Service,
    layout: DataLayout,
    timeout: float,
    categories: Sequence[Category] | None = None,
) -> OfflineEvidence:
    """Check the AOF (manifest + files) and the RDB of a stopped server with
    redis-check-aof / redis-check-rdb (read-only), and read the RDB header and the
    installed redis-server version. The three tools run side by side.

    With `categories`, when `--fix` would cut complete commands from the last AOF
    file and dump.rdb is sound, both ways out are loaded on copies in throwaway
    servers and compared (`comparison`; see persistence.outcomes)."""
    found = OfflineEvidence(aof=discover_aof(layout))
    rdb_path = layout.rdb_path

    def aof_job() -> None:
        target = found.aof.check_path if found.aof else None
        if target is None:
            return
        try:
            found.aof_check = check_aof(service, in_service(service, layout, target), timeout)
        except RunbookError as exc:
            found.aof_error = exc.message

    def rdb_job() -> None:
        if not rdb_path.is_file():
            return
        try:
            found.rdb_header = read_rdb_header(rdb_path)
            path = in_service(service, layout, rdb_path)
            found.rdb_check = with_trailer(check_rdb(service, path, timeout), rdb_path)
        except RunbookError as exc:
            found.rdb_error = exc.message

    def version_job() -> None:
        try:
            found.server_version = installed_redis_version(service, min(timeout, 5.0))
        except RunbookError:
            found.server_version = None

    with ThreadPoolExecutor(max_workers=3) as pool:
        for future in [pool.submit(job) for job in (aof_job, rdb_job, version_job)]:
            future.result()
    found.cut = what_the_cut_drops(found.aof, found.aof_check)
    rdb_ok = found.rdb_check is not None and found.rdb_check.ok
    if categories is not None and found.cut is not None and found.cut.complete and rdb_ok:
        assert found.aof is not None
        assert found.aof_check is not None
        found.comparison = compare_outcomes(
            layout,
            found.aof,
            found.aof_check,
            found.cut,
            categories,
            timeout,
            service.local_argv,
        )
    return found
