"""Recovery procedures through the real CLI on a real lab server (service kind
`process`): plan, --dry-run, confirmation, lock, journal, restart, emergency start."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
import redis

from redis_runbook import lab
from redis_runbook.config import load_config
from redis_runbook.errors import EXIT_FAILED
from redis_runbook.lab.faults import inject
from redis_runbook.lab.lifecycle import lab_server
from redis_runbook.lab.server import RedisServer
from redis_runbook.locks import file_lock
from redis_runbook.ports import free_port
from redis_runbook.procedures.restart import Keyspace, read_keyspace
from redis_runbook.readiness import wait_started
from redis_runbook.redislog import match_lines
from redis_runbook.service import RunState, make_service
from redis_runbook.target import display_url
from tests.support.cli import run_cli
from tests.support.files import file_sizes
from tests.support.lab import Lab, journal, lab_client
from tests.support.server_version import config_error_lines
from tests.support.servers import RedisFactory, plain_client, process_config
from tests.support.waiting import wait_until


def settled_files(root: Path) -> dict[str, int]:
    """file_sizes once two reads 200 ms apart agree (Redis appends to the AOF
    after each event loop)."""

    def stable() -> dict[str, int] | None:
        first = file_sizes(root)
        time.sleep(0.2)
        return first if file_sizes(root) == first else None

    return wait_until(stable, f"files under {root} to stop changing")


def dump_keys(client: redis.Redis) -> dict[bytes, object]:
    """Every key with its DUMP payload (type and value, byte for byte)."""
    return {key: client.dump(key) for key in client.scan_iter(count=1000)}


def test_restart_keeps_every_key_and_journals(
    lab_env: Lab,
) -> None:
    status, env = lab_env
    client = lab_client(status)
    before = dump_keys(client)
    old_pid = lab.status(status.dir).pid
    result = run_cli("--yes", "recover", "restart", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verify PING and the keyspace: PING ok" in result.stdout
    new_pid = lab.status(status.dir).pid
    assert new_pid is not None
    assert new_pid != old_pid
    after = dump_keys(client)
    assert set(after) == set(before)
    assert {k: v for k, v in after.items() if not k.startswith(b"bull:")} == {
        k: v for k, v in before.items() if not k.startswith(b"bull:")
    }
    steps = [(e["step"], e["outcome"]) for e in journal(env)]
    assert steps[0] == ("plan", "started")
    assert ("stop Redis with SHUTDOWN SAVE", "done") in steps
    assert steps[-1] == ("plan", "finished")
    assert client.exists("redis-runbook:lock") == 0  # released
    client.close()


def test_restart_evidence_is_the_keyspace_not_a_walk(lab_env: Lab) -> None:
    """The default restart proves nothing was lost with INFO keyspace before and
    after: the restarted server has run no SCAN (its command stats start at zero)."""
    status, env = lab_env
    result = run_cli("--yes", "recover", "restart", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    with lab_client(status) as client:
        stats = client.info("commandstats")
    assert "cmdstat_scan" not in stats, stats.get("cmdstat_scan")
    # The same count before and after (the runner's lock key in both).
    assert re.search(r"PING ok; (\d+) keys, \1 before", result.stdout), result.stdout


def test_a_restart_verifying_categories_says_the_change_per_category(lab_env: Lab) -> None:
    """--verify-categories on a restart that keeps its keys: done, and the last step
    gives the change per category (keys with a TTL may expire meanwhile)."""
    _, env = lab_env
    result = run_cli("--yes", "recover", "restart", "--verify-categories", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    said = " ".join(result.stdout.split())
    assert re.search(r"PING ok; \d+ keys, \d+ before; per category: (no change|\w+ [+-]\d+)", said)
    assert "missing" not in said


@pytest.mark.parametrize("per_category", [False, True])
def test_a_restart_that_loses_keys_fails_and_walks_to_say_where(
    lab_env: Lab, per_category: bool
) -> None:
    """Keys written after the AOF was switched off at run time are lost by a restart
    without saving (the server comes back from its config file: AOF on, the files as
    they were). The keyspace totals catch it; the walk it triggers names the category
    (with --verify-categories: the change per category too)."""
    status, env = lab_env
    with lab_client(status) as client:
        # More than the keys with a TTL (those may expire across a restart).
        lost = sum(db.get("expires", 0) for db in client.info("keyspace").values()) + 100
        client.config_set("appendonly", "no")
        client.mset({f"session:lost:{i}": "x" for i in range(lost)})
    flags = ["--verify-categories"] if per_category else []
    result = run_cli("--yes", "recover", "restart", "--no-save", *flags, env=env)
    output = result.stdout + result.stderr
    assert result.returncode == EXIT_FAILED, output
    # and the runner's lock key, written after the AOF was switched off
    assert f"{lost + 1} keys missing after the restart" in output
    assert "keys per category now: " in output
    assert (f"session -{lost}" in output) is per_category
    with lab_client(status) as client:
        assert client.exists("session:lost:0") == 0  # lost for real, not a test artefact
    failed = [e for e in journal(env) if e["outcome"] == "failed"]
    assert [e["step"] for e in failed] == [
        "verify PING and the keyspace" + (" per category" if per_category else "")
    ]


@pytest.mark.parametrize("aof", [False, True])
def test_the_keyspace_read_sums_every_database_and_the_keys_the_rdb_load_read(
    redis_factory: RedisFactory, aof: bool
) -> None:
    """read_keyspace (the restart's witness) over every database, after a restart:
    the keys the load read from the RDB, unknown (None) when the server loads its AOF."""
    server = redis_factory({"appendonly": "yes" if aof else "no"})
    with plain_client(server) as db0, plain_client(server, db=1) as db1:
        db0.mset({"a": 1, "b": 2})
        db0.set("c", 3, ex=3600)
        db1.set("d", 4, ex=3600)
    server.stop(save=True)
    server.start()
    with server.client() as client:
        totals, loaded = read_keyspace(client)
    assert totals == Keyspace(keys=4, expires=2)
    assert loaded == (None if aof else 4)


def test_dry_run_changes_nothing(lab_env: Lab) -> None:
    status, env = lab_env
    client = lab_client(status)
    files, keys, pid = settled_files(status.dir / "data"), dump_keys(client), status.pid
    for command in (["recover", "restart"], ["recover", "emergency-start", "--force"]):
        result = run_cli("--dry-run", *command, env=env)
        assert result.returncode == 0, result.stderr
        assert "dry run: nothing was changed" in result.stdout
        assert "Plan: recover" in result.stdout
    assert lab.status(status.dir).pid == pid
    assert file_sizes(status.dir / "data") == files
    assert dump_keys(client) == keys
    assert not (Path(env["REDIS_RUNBOOK_RUNBOOK__STATE_DIR"]) / "journal.jsonl").exists()
    client.close()


def test_no_terminal_and_no_yes_is_refused(lab_env: Lab) -> None:
    status, env = lab_env
    result = run_cli("recover", "restart", env=env)
    assert result.returncode == 3
    assert "no terminal to ask" in result.stderr
    assert "HINT: re-run with --yes" in result.stderr
    assert lab.status(status.dir).pid == status.pid


def test_second_procedure_is_refused_while_one_holds_the_lock(
    lab_env: Lab,
) -> None:
    status, env = lab_env
    config = load_config(status.config_path, env=env).config
    where = display_url(config.target.url)
    with file_lock(config.runbook.state_dir / "locks", where, "recover aof"):
        result = run_cli("--yes", "recover", "restart", env=env)
    assert result.returncode == 3
    assert f"another redis-runbook procedure is running on {where}: recover aof" in result.stderr
    assert f"pid {os.getpid()}" in result.stderr
    assert lab.status(status.dir).pid == status.pid  # nothing was done


def test_restart_stops_at_a_failed_save_and_leaves_redis_running(
    lab_env: Lab,
) -> None:
    status, env = lab_env
    # SHUTDOWN SAVE renames its temp file onto dump.rdb: a directory there makes it fail.
    dump = status.dir / "data" / "dump.rdb"
    if dump.exists():
        dump.rename(dump.with_name("dump.rdb.kept-by-test"))
    dump.mkdir()
    result = run_cli("--yes", "recover", "restart", env=env)
    assert result.returncode == 1
    assert "step 2 (stop Redis with SHUTDOWN SAVE) failed" in result.stderr
    assert "recover restart --no-save" in result.stderr
    assert lab.status(status.dir).pid == status.pid  # still running, untouched
    assert lab_client(status).ping()
    outcomes = [(e["step"], e["outcome"]) for e in journal(env)]
    assert ("stop Redis with SHUTDOWN SAVE", "failed") in outcomes


def test_restart_waits_for_a_shutdown_save_longer_than_the_stop_timeout(lab_env: Lab) -> None:
    """SHUTDOWN SAVE of a big dataset takes longer than the 30 s stop timeout (4 GiB
    did in the production-size bench): the restart waits as long as a save of the
    dataset may take instead of failing while Redis is still saving. The save is
    made to take 45 s with `rdb-key-save-delay` (a sleep per key, not CPU)."""
    status, env = lab_env
    client = lab_client(status)
    keys = client.dbsize()
    client.config_set("rdb-key-save-delay", str(45_000_000 // keys))
    result = run_cli("--yes", "recover", "restart", env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert lab_client(status).dbsize() == keys
    assert lab_client(status).config_get("rdb-key-save-delay")["rdb-key-save-delay"] == "0"


def test_restart_revives_a_hung_server(lab_env: Lab) -> None:
    status, env = lab_env
    assert status.pid is not None
    keys = lab_client(status).dbsize()
    os.kill(status.pid, signal.SIGSTOP)
    result = run_cli("--yes", "recover", "restart", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert lab_client(status).dbsize() == keys


def test_emergency_start_moves_data_aside_and_starts_empty(
    lab_env: Lab,
) -> None:
    status, env = lab_env
    client = lab_client(status)
    client.shutdown(save=True)
    data = status.dir / "data"
    files = file_sizes(data)

    only_yes = run_cli("--yes", "recover", "emergency-start", env=env)
    assert only_yes.returncode == 3
    assert "--yes alone is not enough" in only_yes.stderr
    assert file_sizes(data) == files

    result = run_cli("--yes", "recover", "emergency-start", "--i-understand-data-loss", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    # Rich wraps the step's long line where the temp path's length puts it.
    assert "queues reconstruct" in " ".join(result.stdout.split())
    aside = [
        p for p in status.dir.iterdir() if p.name.startswith("data.") and "emergency" in p.name
    ]
    assert len(aside) == 1
    assert file_sizes(aside[0]) == files  # every old file kept, byte for byte in size
    assert lab_client(status).dbsize() == 0
    assert data.is_dir()


def test_emergency_start_refuses_a_running_redis(
    lab_env: Lab,
) -> None:
    status, env = lab_env
    files = settled_files(status.dir / "data")
    result = run_cli("--yes", "recover", "emergency-start", "--i-understand-data-loss", env=env)
    assert result.returncode == 3
    assert "Redis is running" in result.stderr
    assert "emergency-start --force" in result.stderr
    assert file_sizes(status.dir / "data") == files
    assert lab.status(status.dir).pid == status.pid


def test_unknown_procedure_is_a_usage_error(lab_env: Lab) -> None:
    _status, env = lab_env
    result = run_cli("recover", "rebuild-everything", env=env)
    assert result.returncode == 2
    assert "No such command 'rebuild-everything'" in result.stderr


def test_missing_data_dir_is_refused_and_nothing_is_created(lab_env: Lab, tmp_path: Path) -> None:
    status, env = lab_env
    lab_client(status).shutdown(save=True)
    missing = tmp_path / "no-such-data-dir"
    env = env | {"REDIS_RUNBOOK_SERVICE__DATA_DIR": str(missing)}
    for command in (["recover", "emergency-start", "--i-understand-data-loss"],):
        result = run_cli("--yes", *command, env=env)
        assert result.returncode == 3, result.stderr
        assert f"data dir {missing} does not exist" in result.stderr
        assert "HINT:" in result.stderr
    assert not missing.exists()
    assert lab.status(status.dir).running is False


def test_restart_of_a_server_that_dies_at_once_stops_waiting_and_quotes_the_error(
    lab_env: Lab,
) -> None:
    """`lab break config-error`: the restarted process exits during its start. The
    wait notices the exit (it does not sit out its deadline) and the failure quotes
    Redis' own FATAL CONFIG FILE ERROR lines with the offending directive."""
    status, env = lab_env
    inject("config-error", lab_server(status.dir))
    result = run_cli("--yes", "recover", "restart", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "exited" in output
    assert "not ready after" not in output
    assert all(line in output for line in config_error_lines())
    assert "maxmemory-polcy noeviction" in output
    failed = [e for e in journal(env) if e["outcome"] == "failed"]
    assert failed, journal(env)
    assert config_error_lines()[0] in json.dumps(failed)


def test_redis_8_unresolved_configuration_is_a_config_error() -> None:
    """Redis 8 aborts on an unknown directive with a list of unresolved
    configurations instead of FATAL CONFIG FILE ERROR (no 8.x binary here: its lines)."""
    lines = [
        "1:C 03 Dec 2026 20:00:00.000 * oO0OoO0OoO0Oo Redis is starting oO0OoO0OoO0Oo",
        "1:C 03 Dec 2026 20:00:00.001 # Unresolved Configuration(s) Detected:",
        "1:C 03 Dec 2026 20:00:00.001 # >>> 'maxmemory-polcy noeviction'",
        "1:C 03 Dec 2026 20:00:00.001 # Module Configuration detected without loadmodule "
        "directive or no ApplyConfig call: aborting",
    ]
    (match, *_) = [m for m in match_lines(lines, "log") if m.key == "config-error"]
    assert ">>> 'maxmemory-polcy noeviction'" in match.text


def test_the_exit_watch_lets_a_daemonizing_server_start(tmp_path: Path) -> None:
    """`daemonize yes`: the process started exits 0 at once and its child serves;
    that is not a failed start."""
    server = RedisServer(tmp_path / "r", settings={"daemonize": "yes"})
    server.port = free_port()
    server.write_conf()
    config = process_config(server)
    service = make_service(config)
    service.start()
    try:
        wait_started(service, config.target, 60.0)
        assert service.state().state is RunState.RUNNING
    finally:
        pid = server.pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)


def test_emergency_start_of_a_server_that_dies_at_once_quotes_the_error(lab_env: Lab) -> None:
    """Every procedure that starts Redis stops waiting when the process exits."""
    status, env = lab_env
    inject("config-error", lab_server(status.dir))
    result = run_cli("--yes", "recover", "emergency-start", "--i-understand-data-loss", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "exited during its start" in output
    assert "maxmemory-polcy noeviction" in output
