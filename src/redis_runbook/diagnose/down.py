"""The seed's §2.3 decision tree as rules over the Evidence:

    server down (A) ── why: hung, config error, corrupt files, OOM-killed, disk full,
    │                  crashed, stopped cleanly, unknown
    ├─ data files damaged (D) ── which file, truncated or corrupt, fixable or not
    server up ─┬─ out of memory (B): OOM replies, memory past the critical threshold
               └─ degraded (C): slow, busy script, paused, blocked clients, too many
                  clients, fragmentation, still loading

Every Scenario carries the evidence lines it rests on and the command to run next.
"""

from __future__ import annotations

from redis_runbook.diagnose.evidence import Evidence
from redis_runbook.diagnose.scenario import (
    AOF_ADVICE,
    CMD_AOF,
    CMD_HEALTH,
    CMD_RESTART,
    LOAD_FAILURES,
    Scenario,
    disk_line,
    restore_or_else,
)
from redis_runbook.errors import AuthFailed, SecretError, TLSMismatch
from redis_runbook.persistence.rdb import max_rdb_version_of, writers_of
from redis_runbook.service import RunState
from redis_runbook.target import redis_cli_prefix


def _is_last(ev: Evidence, name: str | None) -> bool | None:
    aof = ev.offline.aof if ev.offline else None
    if aof is None or name is None or aof.kind not in ("multi-part", "single"):
        return None
    return aof.is_last(name)


def _aof_scenario(
    ev: Evidence, cause: str, summary: str, files: tuple[str, ...], evidence: list[str]
) -> Scenario:
    if cause in ("aof-truncated", "aof-format"):
        lost = (
            "only the incomplete last command is cut"
            if cause == "aof-truncated"
            else ("the commands from the damage to the end of the file are cut")
        )
        advice = (
            f"the last AOF file can be cut back to its last good command ({lost}); "
            "the procedure copies it first"
        )
        if cause == "aof-truncated" and ev.layout.aof_load_truncated:
            advice += "; aof-load-truncated is yes, so a plain start would also cut it"
        comparison = ev.offline.comparison if ev.offline else None
        cut = ev.offline.cut if ev.offline else None
        if comparison is None and cut is not None and cut.complete:
            advice += (
                f"; --fix would cut {cut.summary} (no sound {ev.layout.dbfilename} to compare "
                f"with), so `{CMD_AOF}` asks for the typed word"
            )
        if comparison is not None:
            evidence = [*evidence, *comparison.lines()]
            advice = (
                f"two ways out, measured on copies: {comparison.aof.line()}; "
                f"{comparison.rdb.line()}. `{CMD_AOF}` takes "
                + ("the RDB" if comparison.chosen == "rdb" else "the cut")
                + f" ({comparison.reason}) and asks for the typed word; "
                + comparison.other_loses()
            )
        return Scenario("D", cause, summary, tuple(evidence), CMD_AOF, advice, files)
    rdb = ev.offline.rdb_check if ev.offline else None
    if rdb is not None and rdb.ok:
        advice = (
            f"`{CMD_AOF}` falls back to the sound {ev.layout.dbfilename}: the damaged AOF is "
            "moved aside and a new one built on a copy of the RDB; writes after the RDB's "
            "save are lost from the live server"
        )
        return Scenario("D", cause, summary, tuple(evidence), CMD_AOF, advice, files)
    command, tail = restore_or_else(ev)
    advice = AOF_ADVICE.get(cause, "") + tail
    return Scenario("D", cause, summary, tuple(evidence), command, advice, files)


def _offline_aof(ev: Evidence) -> list[Scenario]:
    off = ev.offline
    if off is None or off.aof is None:
        return []
    aof = off.aof
    found: list[Scenario] = []
    if aof.kind == "orphaned":
        summary = (
            f"{aof.directory} holds AOF files but no manifest: a start would create a "
            "new, empty AOF and ignore them"
        )
        return [_aof_scenario(ev, "aof-manifest", summary, aof.unlisted, [summary])]
    if aof.manifest_error is not None:
        err = aof.manifest_error
        found.append(
            _aof_scenario(
                ev,
                "aof-manifest",
                f"the AOF manifest is broken: {err.reason}",
                (aof.manifest_path.name,) if aof.manifest_path else (),
                [err.message],
            )
        )
    missing = tuple(f.info.name for f in aof.missing)
    if missing:
        summary = f"the manifest names {', '.join(missing)} but the file is not there"
        found.append(_aof_scenario(ev, "aof-missing-file", summary, missing, [summary]))
    check = off.aof_check
    if check is None or check.valid or (check.problem in ("manifest", "missing-file") and found):
        return found
    last = _is_last(ev, check.file)
    cause = {
        "truncated": "aof-truncated",
        "format": "aof-format",
        "rdb-base": "aof-nonlast",
        "missing-file": "aof-missing-file",
        "manifest": "aof-manifest",
        "io-error": "aof-io-error",
    }[check.problem or "io-error"]
    if cause in ("aof-truncated", "aof-format") and (last is False or check.not_last):
        cause = "aof-nonlast"
    if check.problem == "rdb-base" and last:
        cause = "aof-rdb-base"
    evidence = [f"redis-check-aof: {check.summary}"]
    if cause == "aof-nonlast":
        evidence.append(f"{check.file} is not the last AOF file: --fix cannot cut it")
    files = (check.file,) if check.file else ()
    found.append(_aof_scenario(ev, cause, check.summary, files, evidence))
    return found


def _rdb_scenario(ev: Evidence, cause: str, summary: str, evidence: list[str]) -> Scenario:
    name = ev.layout.dbfilename
    if ev.layout.appendonly:
        advice = (
            f"appendonly is yes: Redis loads the AOF, not {name}; the snapshot is "
            "still a bad backup source — once Redis is up, "
            f"`{redis_cli_prefix(ev.config.target)} BGSAVE` writes a new one"
        )
        command = CMD_RESTART if ev.down else CMD_HEALTH
        return Scenario("D", cause, summary, tuple(evidence), command, advice, (name,))
    command, tail = restore_or_else(ev)
    advice = f"no tool repairs a damaged RDB: {tail}"
    if cause == "rdb-too-new":
        advice = (
            f"{name} is not damaged: it needs a newer redis-server. Running that version on "
            f"this data loses nothing; else: {tail}"
        )
    return Scenario("D", cause, summary, tuple(evidence), command, advice, (name,))


def _offline_rdb(ev: Evidence) -> list[Scenario]:
    off = ev.offline
    if off is None or off.rdb_header is None:
        return []
    header = off.rdb_header
    name = ev.layout.dbfilename
    evidence = [f"{name}: {header.summary}"]
    if not header.magic_ok:
        return [_rdb_scenario(ev, "rdb-not-rdb", f"{name} is not an RDB file", evidence)]
    ceiling = max_rdb_version_of(off.server_version) if off.server_version else None
    if header.version is not None and ceiling is not None and header.version > ceiling:
        summary = (
            f"{name} is RDB version {header.version} ({writers_of(header.version)}); "
            f"redis-server {off.server_version} reads up to version {ceiling}"
        )
        return [_rdb_scenario(ev, "rdb-too-new", summary, [*evidence, summary])]
    check = off.rdb_check
    if check is None or check.ok:
        return []
    cause = {
        "crc": "rdb-crc",
        "truncated": "rdb-truncated",
        "not-rdb": "rdb-not-rdb",
        "too-new": "rdb-too-new",
        "missing": "rdb-corrupt",
    }.get(check.problem or "", "rdb-corrupt")
    summary = f"{name}: {check.summary}"
    return [_rdb_scenario(ev, cause, summary, [*evidence, f"redis-check-rdb: {check.summary}"])]


LOG_CAUSES: dict[str, tuple[str, str]] = {
    "aof-truncated-refused": ("aof", "aof-truncated"),
    "aof-bad-format": ("aof", "aof-format"),
    "aof-truncated-not-last": ("aof", "aof-nonlast"),
    "aof-read-error": ("aof", "aof-io-error"),
    "aof-manifest": ("aof", "aof-manifest"),
    "aof-file-missing": ("aof", "aof-missing-file"),
    "aof-rdb-base": ("aof", "aof-nonlast"),
    "rdb-crc": ("rdb", "rdb-crc"),
    "rdb-short-read": ("rdb", "rdb-truncated"),
    "rdb-signature": ("rdb", "rdb-not-rdb"),
    "rdb-version": ("rdb", "rdb-too-new"),
}


def _file_in(message: str) -> tuple[str, ...]:
    """The AOF file a load error names (`... append only file <f>...`, `AOF file <f> `)."""
    for marker in ("append only file ", "AOF file ", "RDB base file "):
        if marker in message:
            word = message.split(marker, 1)[1].split()[0].rstrip(".:,")
            return (word,)
    return ()


def _from_logs(ev: Evidence, covered: set[str]) -> list[Scenario]:
    """D scenarios from load errors in the log, for file families no offline check
    covered (the tool could not run, or the server is not down)."""
    found: list[Scenario] = []
    base_loading = ev.logs.has("aof-base-loading")
    seen: set[str] = set()
    for match in ev.logs.find(*LOG_CAUSES):
        family, cause = LOG_CAUSES[match.key]
        if family == "rdb" and base_loading:
            family, cause = "aof", "aof-nonlast"
        if family in covered or cause in seen:
            continue
        seen.add(cause)
        line = f"log: {match.text}"
        if family == "aof":
            summary = f"the last start failed: {match.meaning}"
            found.append(_aof_scenario(ev, cause, summary, _file_in(match.message), [line]))
        else:
            found.append(
                _rdb_scenario(ev, cause, f"the last start failed: {match.meaning}", [line])
            )
    return found


def corrupt_scenarios(ev: Evidence) -> list[Scenario]:
    """D: damaged AOF/RDB files, from the offline checks, else from the log."""
    found = _offline_aof(ev) + _offline_rdb(ev)
    covered = set()
    off = ev.offline
    if off is not None and off.aof_check is not None:
        covered.add("aof")
    if off is not None and off.rdb_check is not None:
        covered.add("rdb")
    if ev.snapshot.reachable:
        return found  # a server that is up loaded its files: old load errors are history
    return found + _from_logs(ev, covered)


# --- A: the server is down ----------------------------------------------------------------


def _kernel_kill(ev: Evidence) -> str | None:
    """The kernel OOM line that killed this server, when there is one."""
    kills = ev.kernel.kills
    if ev.stale_pid is not None:
        kills = tuple(k for k in kills if k.pid == ev.stale_pid)
    return kills[-1].line if kills else None


def _down_cause(ev: Evidence, corrupt: list[Scenario]) -> tuple[str, list[str]]:
    """Why a stopped server is down, and the lines that say so (first rule wins)."""
    logs = ev.logs
    config = logs.find("config-error", "dir-error")
    if config:
        return "config-error", [f"{m.source}: {m.text}" for m in config]
    if not ev.disk.exists:
        return "config-error", [disk_line(ev)]
    if logs.has(*LOAD_FAILURES):
        lines = [f"log: {m.text}" for m in logs.find(*LOAD_FAILURES)]
        return "corrupt-files", lines
    kill = _kernel_kill(ev)
    if kill:
        return "oom-killed", [f"kernel: {kill}"]
    if logs.has("allocator-oom"):
        return "oom-killed", [f"log: {m.text}" for m in logs.find("allocator-oom")]
    if logs.has("no-space") or ev.disk.full:
        lines = [f"log: {m.text}" for m in logs.find("no-space")]
        return "disk-full", [*lines, disk_line(ev)]
    if logs.has("aof-write-error"):
        return "write-error", [f"log: {m.text}" for m in logs.find("aof-write-error")]
    if logs.has("crash"):
        return "crashed", [f"log: {m.text}" for m in logs.find("crash")]
    if logs.has("listen-failed"):
        return "config-error", [f"log: {m.text}" for m in logs.find("listen-failed")]
    if logs.has("shutdown"):
        return "stopped", [f"log: {m.text}" for m in logs.find("shutdown")][-1:]
    if logs.has("ready"):
        return "crashed", [
            "the log ends while the server was up, with no shutdown message: "
            "it was killed (kill -9, OOM killer, host crash) or died"
        ]
    if corrupt:
        return "corrupt-files", []
    return "unknown", []


DOWN_SUMMARIES: dict[str, str] = {
    "config-error": "Redis cannot start: its configuration is invalid",
    "corrupt-files": "Redis cannot start: loading its data files failed",
    "oom-killed": "Redis was killed for lack of memory",
    "disk-full": "Redis stopped: the disk is full",
    "write-error": "Redis stopped after a write error",
    "crashed": "Redis died without shutting down",
    "stopped": "Redis was shut down and not started again",
    "unknown": "Redis is not running and the logs do not say why",
}


def down_scenario(ev: Evidence, corrupt: list[Scenario]) -> Scenario:
    """A: the server is down (or hung) — why, and what to run."""
    state = ev.state
    reach = ev.snapshot.error.message if ev.snapshot.error else "unreachable"
    if state.state is RunState.HUNG:
        pid = state.pid
        return Scenario(
            "A",
            "hung",
            "Redis is frozen: the process exists but does not run",
            (f"service: {state.detail} (pid {pid})", f"connection: {reach}"),
            CMD_RESTART,
            f"resume it with `kill -CONT {pid}` if it was stopped on purpose; otherwise restart it",
            (),
        )
    cause, lines = _down_cause(ev, corrupt)
    evidence = [f"service: {state.state.value} ({state.detail})", f"connection: {reach}", *lines]
    if cause not in ("config-error", "disk-full"):
        evidence.append(disk_line(ev))
    advice = None
    command = CMD_RESTART
    if corrupt:
        command = corrupt[0].next_command
        advice = f"fix the data files first (scenario D): {corrupt[0].summary}"
    elif cause == "config-error" and not ev.disk.exists:
        advice = (
            f"{ev.disk.path} does not exist: is the data volume mounted (seed §3.1)? Check `dir` "
            "in redis.conf and [service] data_dir"
        )
    elif cause == "config-error":
        advice = f"correct {ev.config.service.redis_conf or 'redis.conf'} as the lines say"
    elif cause == "oom-killed":
        advice = (
            "give the container/host more memory than maxmemory plus overhead "
            "(seed §3.2), then restart"
        )
    elif cause == "disk-full":
        advice = f"free space on the filesystem of {ev.disk.path} (df -h), then restart"
    files = tuple(f for s in corrupt for f in s.files)
    return Scenario("A", cause, DOWN_SUMMARIES[cause], tuple(evidence), command, advice, files)


def unknown_reason(ev: Evidence) -> str | None:
    """Why diagnose cannot tell (credentials refused or unreadable, or [target] speaks
    the other protocol than the port: TLS vs plain), else None."""
    error = ev.snapshot.error
    if isinstance(error, AuthFailed | SecretError | TLSMismatch):
        return error.message
    return None
