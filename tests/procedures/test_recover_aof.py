"""`recover aof` against real damage made by the lab's fault injection: repair of
the last file (the cut reported), RDB fallback (the trap avoided), refusal when
nothing is usable — and never a file lost."""

from __future__ import annotations

import json
from pathlib import Path

import redis

from redis_runbook import lab
from redis_runbook.lab.faults import inject
from redis_runbook.lab.lifecycle import lab_server
from tests.support.cli import run_cli
from tests.support.files import file_bytes
from tests.support.lab import Lab, lab_client


def kept_somewhere(before: dict[str, bytes], root: Path) -> None:
    """Every file that existed before is still there, in place or in an aside copy,
    with the same bytes (or, for a file the fix truncated, its copy aside has them)."""
    contents = {p.read_bytes() for p in root.rglob("*") if p.is_file()}
    for name, data in before.items():
        assert data in contents, f"{name} ({len(data)} bytes) is gone"


def test_truncated_aof_is_repaired_and_the_cut_reported(lab_env: Lab) -> None:
    status, env = lab_env
    client = lab_client(status, decode_responses=True)
    for i in range(20):
        client.set(f"late:{i}", i)
    injected = inject("aof-truncate", lab_server(status.dir))
    data = status.dir / "data"
    before = file_bytes(data)
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
    client = lab_client(status, decode_responses=True)
    for i in range(10):
        client.set(f"tail:{i}", i)
    inject("aof-garbage-last", lab_server(status.dir))
    data = status.dir / "data"
    before = file_bytes(data)
    plain_yes = run_cli("--yes", "recover", "aof", env=env)
    assert plain_yes.returncode == 3  # complete commands are cut: the typed word
    assert file_bytes(data) == before
    result = run_cli("--yes", "recover", "aof", "--i-understand-data-loss", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no other way out" in result.stdout  # no dump.rdb to compare with
    assert "complete command(s) (" in result.stdout  # names what the fix cut
    assert client.ping()
    kept_somewhere(before, data)


def test_damaged_base_falls_back_to_the_rdb(lab_env: Lab) -> None:
    status, env = lab_env
    client = lab_client(status, decode_responses=True)
    client.save()
    saved = {k: client.type(k) for k in client.scan_iter(count=1000)}
    client.set("written-after-the-save", "1")
    inject("aof-garbage-nonlast", lab_server(status.dir))
    data = status.dir / "data"
    before = file_bytes(data)

    plain_yes = run_cli("--yes", "recover", "aof", env=env)
    assert plain_yes.returncode == 3  # typed confirmation: --yes alone is not enough
    assert file_bytes(data) == before

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
    before = file_bytes(data)
    result = run_cli("--yes", "recover", "aof", "--i-understand-data-loss", env=env)
    assert result.returncode == 3
    assert "beyond repair" in result.stderr
    # The lab's repository holds no archive: a restore would be a dead end.
    assert "recover restore" not in result.stderr
    assert "HINT: no archive in" in result.stderr
    assert "redis-runbook recover emergency-start" in result.stderr
    assert file_bytes(data) == before


def test_nothing_usable_with_an_archive_names_the_restore_that_works(lab_env: Lab) -> None:
    status, env = lab_env
    made = run_cli("backup", "create", env=env, timeout=180)
    assert made.returncode == 0, made.stdout + made.stderr
    inject("manifest-corrupt", lab_server(status.dir))
    (status.dir / "data" / "dump.rdb").rename(status.dir / "dump.rdb.kept-by-the-test")
    refused = run_cli("--yes", "recover", "aof", "--i-understand-data-loss", env=env)
    assert refused.returncode == 3
    assert "redis-runbook recover restore --archive latest" in refused.stderr
    restored = run_cli("--yes", "recover", "restore", "--archive", "latest",
                       "--i-understand-data-loss", env=env, timeout=180)  # fmt: skip
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert lab_client(status, decode_responses=True).ping()


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
    before = file_bytes(data)
    result = run_cli("--dry-run", "recover", "aof", env=env)
    assert result.returncode == 0, result.stderr
    assert "truncate appendonly.aof" in result.stdout
    assert file_bytes(data) == before
    assert lab.status(status.dir).running is False


def test_missing_check_tool_is_a_clear_error(lab_env: Lab, tmp_path: Path) -> None:
    status, env = lab_env
    inject("aof-truncate", lab_server(status.dir))
    data = status.dir / "data"
    before = file_bytes(data)
    bare = tmp_path / "bin"
    bare.mkdir()
    result = run_cli("--yes", "recover", "aof", env=env | {"PATH": str(bare)})
    assert result.returncode in (2, 3)
    assert "redis-check-aof" in result.stderr
    assert "Traceback" not in result.stderr
    assert file_bytes(data) == before


def plan_notes(result_stdout: str) -> str:
    """The plan's notes, joined (what `--dry-run` prints before the steps)."""
    return "\n".join(line for line in result_stdout.splitlines() if "note:" in line)


def category_counts(client: redis.Redis) -> dict[str, int]:
    """Keys per seed category, counted on a live server."""
    counts = {"bullmq": 0, "session": 0, "ratelimit": 0, "cache": 0, "other": 0}
    for key in client.scan_iter(count=1000):
        prefix = key.split(":", 1)[0]
        name = {"bull": "bullmq", "session": "session", "ratelimit": "ratelimit"}.get(
            prefix, "cache" if prefix == "cache" else "other"
        )
        if not key.startswith("redis-runbook:"):
            counts[name] += 1
    return counts


def test_sound_rdb_that_keeps_more_wins_over_cutting_the_aof(lab_env: Lab) -> None:
    """The issue's trial: seed, BGSAVE, garbage in the middle of the last AOF file.
    Cutting there would drop ~half of the commands while dump.rdb has every seeded
    key: the plan measures both, picks the RDB and wants the typed word."""
    status, env = lab_env
    client = lab_client(status, decode_responses=True)
    client.save()
    saved = category_counts(client)
    inject("aof-garbage-last", lab_server(status.dir))
    data = status.dir / "data"
    before = file_bytes(data)

    plain_yes = run_cli("--yes", "recover", "aof", env=env, timeout=180)
    assert plain_yes.returncode == 3, plain_yes.stdout + plain_yes.stderr
    assert file_bytes(data) == before

    dry = run_cli("--dry-run", "recover", "aof", env=env, timeout=180)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    notes = plan_notes(dry.stdout)
    assert "if the AOF is cut" in notes, dry.stdout
    assert "if dump.rdb is loaded" in notes, dry.stdout
    assert f"bullmq {saved['bullmq']}" in notes, notes  # the RDB keeps every BullMQ key
    assert "newest write" in notes
    assert "chosen: dump.rdb" in notes, notes
    assert "cutting the AOF instead would lose" in notes, notes
    assert file_bytes(data) == before

    result = run_cli("--yes", "recover", "aof", "--i-understand-data-loss", env=env, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    after = category_counts(client)
    for name in ("bullmq", "session"):  # no TTLs: every key the RDB held is back
        assert after[name] == saved[name], (name, after, saved)
    kept_somewhere(before, data)
    assert any(p.name.endswith(".corrupt") for p in data.iterdir())


def test_cut_that_keeps_more_than_an_old_rdb_is_chosen_with_the_typed_word(lab_env: Lab) -> None:
    """The other way round: dump.rdb is older than most of the AOF's commands, so
    cutting the AOF keeps more. Still complete commands are cut: typed word; and
    dump.rdb (the other option) is kept aside before the repaired server saves."""
    status, env = lab_env
    client = lab_client(status, decode_responses=True)
    client.save()
    pipe = client.pipeline(transaction=False)
    for i in range(20000):
        pipe.set(f"after-save:{i}", i)
        if i % 100 == 0:
            pipe.xadd("after-save:stream", {"n": i})
    pipe.execute()
    inject("aof-garbage-last", lab_server(status.dir))
    data = status.dir / "data"
    before = file_bytes(data)

    plain_yes = run_cli("--yes", "recover", "aof", env=env, timeout=180)
    assert plain_yes.returncode == 3, plain_yes.stdout + plain_yes.stderr
    assert file_bytes(data) == before

    dry = run_cli("--dry-run", "recover", "aof", env=env, timeout=180)
    notes = plan_notes(dry.stdout)
    assert "chosen: cut the AOF" in notes, dry.stdout
    assert "loading dump.rdb instead would lose" in notes, notes

    result = run_cli("--yes", "recover", "aof", "--i-understand-data-loss", env=env, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert client.exists("after-save:0") == 1
    kept_somewhere(before, data)
    assert any(p.name.startswith("dump.rdb.") for p in data.iterdir())


def test_diagnose_names_both_options_with_their_numbers(lab_env: Lab) -> None:
    status, env = lab_env
    client = lab_client(status, decode_responses=True)
    client.save()
    saved = category_counts(client)
    inject("aof-garbage-last", lab_server(status.dir))
    done = run_cli("--json", "diagnose", env=env, timeout=180)
    document = json.loads(done.stdout)
    [corrupt] = [s for s in document["scenarios"] if s["code"] == "D"]
    assert corrupt["next_command"] == "redis-runbook recover aof"
    for text in (corrupt["advice"], "\n".join(corrupt["evidence"])):
        assert "if the AOF is cut" in text, text
        assert "if dump.rdb is loaded" in text, text
        assert f"bullmq {saved['bullmq']}" in text, text  # what dump.rdb keeps
    assert "cutting the AOF instead would lose" in corrupt["advice"]


def test_diagnose_says_what_the_cut_drops_when_there_is_no_rdb(lab_env: Lab) -> None:
    status, env = lab_env
    inject("aof-garbage-last", lab_server(status.dir))
    assert not (status.dir / "data" / "dump.rdb").exists()
    document = json.loads(run_cli("--json", "diagnose", env=env, timeout=180).stdout)
    [corrupt] = [s for s in document["scenarios"] if s["code"] == "D"]
    assert corrupt["next_command"] == "redis-runbook recover aof"
    assert "complete command(s)" in corrupt["advice"], corrupt["advice"]
    assert "typed word" in corrupt["advice"]
