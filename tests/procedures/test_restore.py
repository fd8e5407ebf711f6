"""`recover restore` on the lab with real archives (directory backend and a repokey
borg repository): the round trip keeps every key, an RDB-only archive restores into
an AOF server, and every refusal (unknown, damaged, too new, wrong passphrase)
changes nothing on the live side."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import redis

from redis_runbook import lab
from redis_runbook.backup import make_backend
from redis_runbook.config import load_config
from redis_runbook.keyspace import count_keys
from tests.support.backup import backup_env, borg_init, create, directory_env, edit_metadata
from tests.support.cli import run_cli
from tests.support.files import file_bytes
from tests.support.lab import Lab, lab_client
from tests.support.server_version import too_new_rdb_version


def value(client: redis.Redis, key: bytes) -> Any:
    """A key's type and content (a hash's field order may change on reload)."""
    c: Any = client  # redis-py's stubs want str keys; key names are bytes here
    kind = c.type(key)
    readers: dict[bytes, Any] = {
        b"string": lambda: c.get(key),
        b"hash": lambda: c.hgetall(key),
        b"list": lambda: c.lrange(key, 0, -1),
        b"set": lambda: c.smembers(key),
        b"zset": lambda: c.zrange(key, 0, -1, withscores=True),
        b"stream": lambda: c.xrange(key),
    }
    return kind, readers[kind]()


def ttl_of(client: redis.Redis, key: bytes) -> int:
    """TTL in seconds (redis-py's stubs type it loosely)."""
    reply: Any = client.ttl(key)
    return int(reply)


def durable(client: redis.Redis) -> dict[bytes, Any]:
    """Keys without a TTL and their type and content."""
    keys = [k for k in client.scan_iter(count=1000) if not k.startswith(b"redis-runbook:")]
    return {k: value(client, k) for k in keys if client.ttl(k) == -1}


def test_round_trip_keeps_every_key_and_the_old_data_aside(lab_env: Lab, tmp_path: Path) -> None:
    status, _ = lab_env
    env = directory_env(lab_env, tmp_path)
    client = lab_client(status)
    archive = create(env)
    before = durable(client)
    ttls = {k: ttl_of(client, k) for k in client.scan_iter(count=1000) if client.ttl(k) > 0}
    assert ttls
    client.flushall()
    client.set("written-after-the-backup", "1")
    data = status.dir / "data"

    result = run_cli("--yes", "recover", "restore", "--archive", archive, "--force",
                     "--i-understand-data-loss", env=env, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert durable(client) == before
    # Expiry times are absolute in the RDB: each TTL came back, lower only by the time
    # that passed (the budget covers a slow CI machine).
    for key, ttl in ttls.items():
        assert ttl - 120 <= ttl_of(client, key) <= ttl, key
    assert client.exists("written-after-the-backup") == 0
    aside = [p for p in status.dir.iterdir() if p.name.endswith(".before-restore")]
    assert len(aside) == 1
    assert any(p.name == "dump.rdb" for p in aside[0].rglob("*"))  # the replaced data, kept
    provenance = json.loads((data / ".redis-runbook-restore.json").read_text())
    assert provenance["archive"] == archive
    assert not list(status.dir.glob(".redis-runbook-restore.*"))  # staging cleaned up
    # The lock the backup held was captured in the RDB; it does not block what follows.
    again = run_cli("--yes", "recover", "restart", env=env)
    assert again.returncode == 0, again.stderr


def scans(client: redis.Redis) -> int:
    """SCAN calls the server took since it started (INFO commandstats)."""
    stats: Any = client.info("commandstats")
    return int(stats.get("cmdstat_scan", {}).get("calls", 0))


def test_restore_walks_no_key_and_trusts_the_rdb_check_made_at_create(
    lab_env: Lab, tmp_path: Path
) -> None:
    """Issue 15: the keys are judged from INFO keyspace (no SCAN on the restored
    server), and the RDB is not checked again when `backup create` checked exactly
    the archived bytes. An archive that records no such check is checked; with
    --verify-categories the keys are walked per category."""
    status, _ = lab_env
    env = directory_env(lab_env, tmp_path)
    archive = create(env)
    data = status.dir / "data"
    assert not list(data.glob(".redis-runbook-backup.*"))  # the create's hard link is gone
    folder = tmp_path / "archives" / archive
    recorded = json.loads((folder / "metadata.json").read_text())["rdb_check"]
    assert recorded["ok"] is True
    assert recorded["summary"].startswith("RDB looks OK")
    assert recorded["size"] == (folder / "dump.rdb").stat().st_size

    def restore(*extra: str) -> str:
        done = run_cli("--yes", "recover", "restore", "--archive", archive, "--force",
                       "--i-understand-data-loss", *extra, env=env, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return " ".join(done.stdout.split())

    said = restore()
    client = lab_client(status)
    assert "redis-check-rdb passed at backup create" in said
    assert scans(client) == 0  # the restored server is a new process
    provenance = json.loads((data / ".redis-runbook-restore.json").read_text())
    assert provenance["verdict"]["status"] == "ok", provenance
    assert "by_category" not in provenance["keys"]
    assert provenance["keys"]["total"] == client.execute_command("DBSIZE")

    edit_metadata(tmp_path / "archives", archive, lambda metadata: metadata.pop("rdb_check"))
    said = restore("--verify-categories")
    assert "redis-check-rdb passed at backup create" not in said
    assert f"dump.rdb: {recorded['summary']}" in said  # checked now
    assert scans(client) > 0
    provenance = json.loads((data / ".redis-runbook-restore.json").read_text())
    assert provenance["verdict"]["status"] == "ok", provenance
    assert provenance["keys"]["by_category"]


def test_rdb_only_archive_into_an_aof_server_keeps_every_key(lab_env: Lab, tmp_path: Path) -> None:
    status, _ = lab_env
    env = directory_env(lab_env, tmp_path)
    config = load_config(status.config_path, env=env).config
    client = lab_client(status)
    client.save()
    before = durable(client)
    rdb_copy = tmp_path / "dump.rdb"
    rdb_copy.write_bytes((status.dir / "data" / "dump.rdb").read_bytes())
    metadata = {"keys": count_keys(config.target, config.categories), "rdb_file": "dump.rdb"}
    make_backend(config.backup).create("redis-rdb-only", {"dump.rdb": rdb_copy}, metadata)
    client.shutdown(nosave=True)

    result = run_cli("--yes", "recover", "restore", "--archive", "redis-rdb-only",
                     "--i-understand-data-loss", env=env, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert durable(client) == before  # Redis did not start empty: the trap was avoided
    assert client.config_get("appendonly")["appendonly"] in ("yes", b"yes")
    manifest = status.dir / "data" / "appendonlydir" / "appendonly.aof.manifest"
    assert manifest.exists()
    # Redis wrote the AOF itself (a throwaway server rewrote it from the RDB): its
    # manifest, not one written by hand, in the installed version's format.
    assert "Redis rewrote it from a copy of dump.rdb" in " ".join(result.stdout.split())
    assert manifest.stat().st_uid == (status.dir / "data").stat().st_uid


def test_refusals_change_nothing(lab_env: Lab, tmp_path: Path) -> None:
    status, _ = lab_env
    env = directory_env(lab_env, tmp_path)
    archive = create(env)
    client = lab_client(status)
    client.shutdown(save=True)
    data = status.dir / "data"
    before = file_bytes(data)

    unknown = run_cli("--yes", "recover", "restore", "--archive", "nope",
                      "--i-understand-data-loss", env=env)  # fmt: skip
    assert unknown.returncode == 2
    assert archive in unknown.stderr

    stored = next(p for p in (tmp_path / "archives").rglob("dump.rdb"))
    original = stored.read_bytes()
    newer = b"REDIS%04d" % too_new_rdb_version()
    stored.write_bytes(newer + original[9:])  # the checksum manifest now disagrees
    damaged = run_cli("--yes", "recover", "restore", "--archive", archive,
                      "--i-understand-data-loss", env=env)  # fmt: skip
    assert damaged.returncode in (2, 3), damaged.stderr
    assert "error:" in damaged.stderr
    assert file_bytes(data) == before
    assert not list(status.dir.glob(".redis-runbook-restore.*"))
    assert lab.status(status.dir).running is False


def test_too_new_rdb_is_refused(lab_env: Lab, tmp_path: Path) -> None:
    status, _ = lab_env
    env = directory_env(lab_env, tmp_path)
    config = load_config(status.config_path, env=env).config
    client = lab_client(status)
    client.save()
    newer = tmp_path / "dump.rdb"
    version = too_new_rdb_version()
    newer.write_bytes(b"REDIS%04d" % version + (status.dir / "data" / "dump.rdb").read_bytes()[9:])
    make_backend(config.backup).create("redis-from-8-6", {"dump.rdb": newer}, {"keys": {}})
    client.shutdown(save=True)
    before = file_bytes(status.dir / "data")
    result = run_cli("--yes", "recover", "restore", "--archive", "redis-from-8-6",
                     "--i-understand-data-loss", env=env)  # fmt: skip
    assert result.returncode == 3
    assert f"RDB version {version}" in result.stderr
    assert "newer than redis-server" in result.stderr
    assert file_bytes(status.dir / "data") == before


def test_borg_round_trip_and_a_wrong_passphrase(lab_env: Lab, tmp_path: Path) -> None:
    status, _ = lab_env
    passphrase = f"canary-{uuid.uuid4().hex}"
    repo = tmp_path / "borg-repo"
    borg_init(repo, tmp_path / "borg-base", passphrase)
    env = backup_env(lab_env, tmp_path, "borg", repo, passphrase)
    client = lab_client(status)
    archive = create(env)
    before = durable(client)
    client.shutdown(save=True)
    data_before = file_bytes(status.dir / "data")

    wrong_env = env | {"TEST_BORG_PASSPHRASE": "wrong"}
    wrong = run_cli("--yes", "recover", "restore", "--archive", archive,
                    "--i-understand-data-loss", env=wrong_env)  # fmt: skip
    assert wrong.returncode in (2, 3)
    assert file_bytes(status.dir / "data") == data_before

    result = run_cli("--yes", "recover", "restore", "--archive", "latest",
                     "--i-understand-data-loss", env=env, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert durable(client) == before
    assert passphrase not in result.stdout + result.stderr + wrong.stderr
