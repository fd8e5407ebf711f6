"""`recover aof` against real damage made by the lab's fault injection: repair of
the last file (the cut reported), RDB fallback (the trap avoided), refusal when
nothing is usable — and never a file lost."""

from __future__ import annotations

from pathlib import Path

import redis

from redis_runbook import lab
from redis_runbook.lab.faults import inject
from redis_runbook.lab.lifecycle import lab_server
from tests.conftest import Lab
from tests.helpers import run_cli


def client_of(status: lab.LabStatus) -> redis.Redis:
    assert status.port is not None
    return redis.Redis(port=status.port, decode_responses=True)


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def kept_somewhere(before: dict[str, bytes], root: Path) -> None:
    """Every file that existed before is still there, in place or in an aside copy,
    with the same bytes (or, for a file the fix truncated, its copy aside has them)."""
    contents = {p.read_bytes() for p in root.rglob("*") if p.is_file()}
    for name, data in before.items():
        assert data in contents, f"{name} ({len(data)} bytes) is gone"


def test_truncated_aof_is_repaired_and_the_cut_reported(lab_env: Lab) -> None:
    status, env = lab_env
    client = client_of(status)
    for i in range(20):
        client.set(f"late:{i}", i)
    injected = inject("aof-truncate", lab_server(status.dir))
    data = status.dir / "data"
    before = all_files(data)
    result = run_cli("--yes", "recover", "aof", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "cut " in result.stdout
    assert "1 cut short" in result.stdout
    # Everything acknowledged before the damage survived; only the command cut
    # mid-write is gone, and the output said so.
    assert [client.get(f"late:{i}") for i in range(20)] == [str(i) for i in range(20)]
    kept_somewhere(before, data)
    assert any(p.name.endswith(".before-fix") for p in data.iterdir())
    assert injected.files


def test_garbage_in_the_last_file_reports_the_commands_lost(lab_env: Lab) -> None:
    status, env = lab_env
    client = client_of(status)
    for i in range(10):
        client.set(f"tail:{i}", i)
    inject("aof-garbage-last", lab_server(status.dir))
    data = status.dir / "data"
    before = all_files(data)
    result = run_cli("--yes", "recover", "aof", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "complete command(s) (" in result.stdout  # names what the fix cut
    assert client.ping()
    kept_somewhere(before, data)


def test_damaged_base_falls_back_to_the_rdb(lab_env: Lab) -> None:
    status, env = lab_env
    client = client_of(status)
    client.save()
    saved = {k: client.type(k) for k in client.scan_iter(count=1000)}
    client.set("written-after-the-save", "1")
    inject("aof-garbage-nonlast", lab_server(status.dir))
    data = status.dir / "data"
    before = all_files(data)

    plain_yes = run_cli("--yes", "recover", "aof", env=env)
    assert plain_yes.returncode == 3  # typed confirmation: --yes alone is not enough
    assert all_files(data) == before

    result = run_cli("--yes", "recover", "aof", "--i-understand-data-loss", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "falling back to dump.rdb" in result.stdout
    loaded = {k: client.type(k) for k in client.scan_iter(count=1000)}
    assert loaded.keys() <= saved.keys()
    assert len(loaded) >= len(saved) - 10  # only keys with a TTL may have expired
    assert client.exists("written-after-the-save") == 0
    assert client.config_get("appendonly")["appendonly"] == "yes"
    assert (data / "appendonlydir" / "appendonly.aof.manifest").exists()
    kept_somewhere(before, data)
    assert any(p.name.endswith(".corrupt") for p in data.iterdir())


def test_nothing_usable_is_refused_and_nothing_changes(lab_env: Lab) -> None:
    status, env = lab_env
    inject("manifest-corrupt", lab_server(status.dir))  # and no dump.rdb was ever saved
    data = status.dir / "data"
    assert not (data / "dump.rdb").exists()
    before = all_files(data)
    result = run_cli("--yes", "recover", "aof", "--i-understand-data-loss", env=env)
    assert result.returncode == 3
    assert "beyond repair" in result.stderr
    assert "recover restore --archive latest" in result.stderr
    assert all_files(data) == before


def test_running_redis_is_refused_without_force(lab_env: Lab) -> None:
    status, env = lab_env
    result = run_cli("--yes", "recover", "aof", env=env)
    assert result.returncode == 3
    assert "works on a stopped Redis" in result.stderr
    assert "recover aof --force" in result.stderr
    assert lab.status(status.dir).pid == status.pid


def test_dry_run_changes_nothing(lab_env: Lab) -> None:
    status, env = lab_env
    inject("aof-truncate", lab_server(status.dir))
    data = status.dir / "data"
    before = all_files(data)
    result = run_cli("--dry-run", "recover", "aof", env=env)
    assert result.returncode == 0, result.stderr
    assert "truncate appendonly.aof" in result.stdout
    assert all_files(data) == before
    assert lab.status(status.dir).running is False


def test_missing_check_tool_is_a_clear_error(lab_env: Lab, tmp_path: Path) -> None:
    status, env = lab_env
    inject("aof-truncate", lab_server(status.dir))
    data = status.dir / "data"
    before = all_files(data)
    bare = tmp_path / "bin"
    bare.mkdir()
    result = run_cli("--yes", "recover", "aof", env=env | {"PATH": str(bare)})
    assert result.returncode in (2, 3)
    assert "redis-check-aof" in result.stderr
    assert "Traceback" not in result.stderr
    assert all_files(data) == before
