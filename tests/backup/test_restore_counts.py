"""Key counts after a restore are judged per category (issue 11, item 15): keys
without a TTL must all come back, whatever the size of the other categories. Before,
one tolerance for the whole keyspace (the keys with a TTL plus 1 %) let a whole
small category go missing on a large server."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import redis

from redis_runbook.backup.verify import compare_counts, compare_keyspace
from redis_runbook.status import CheckResult, Status
from tests.support.backup import create, directory_env, edit_metadata
from tests.support.cli import run_cli
from tests.support.lab import Lab
from tests.support.waiting import wait_until


def claim_more_keys(repo: Path, archive: str, category: str, more: int) -> None:
    """Make the archive's metadata say `more` keys of `category` than its RDB holds:
    what a backup that lost them looks like."""

    def claim(metadata: dict[str, Any]) -> None:
        metadata["keys"]["by_category"][category] += more
        metadata["keys"]["total"] += more

    edit_metadata(repo, archive, claim)


def test_missing_durable_keys_of_one_category_fail_the_restore_and_the_drill(
    lab_env: Lab, tmp_path: Path
) -> None:
    env = directory_env(lab_env, tmp_path)
    archive = create(env)
    metadata = json.loads((tmp_path / "archives" / archive / "metadata.json").read_text())
    keys = metadata["keys"]
    assert keys["changes"] == 0  # a quiet lab: the counts are exactly the RDB's
    assert keys["volatile_by_category"]["cache"] > 20  # more TTL keys than go missing
    durable = keys["by_category"]["bullmq"] - keys["volatile_by_category"]["bullmq"]
    claim_more_keys(tmp_path / "archives", archive, "bullmq", 20)

    drill = run_cli("backup", "verify", "--archive", archive, env=env, timeout=120)
    assert drill.returncode == 2, drill.stdout + drill.stderr
    assert "bullmq" in " ".join(drill.stdout.split())
    restored = run_cli("--yes", "recover", "restore", "--archive", archive, "--force",
                       "--i-understand-data-loss", env=env, timeout=120)  # fmt: skip
    assert restored.returncode == 1, restored.stdout + restored.stderr
    said = " ".join((restored.stdout + restored.stderr).split())
    assert f"bullmq: {durable} keys without a TTL, {durable + 20} in the archive" in said


def test_per_category_judgement() -> None:
    """The rule itself, on the figures of the trial: 1M keys, 10,000 with a TTL."""
    recorded = {
        "by_category": {"cache": 990_000, "bullmq": 10_000},
        "volatile_by_category": {"cache": 10_000, "bullmq": 0},
        "changes": 0,
    }
    lost_bullmq = {
        "by_category": {"cache": 990_000, "bullmq": 0},
        "volatile_by_category": {"cache": 10_000, "bullmq": 0},
    }
    assert compare_counts(recorded, lost_bullmq).status is Status.CRITICAL
    one_lost = lost_bullmq | {"by_category": {"cache": 990_000, "bullmq": 9_999}}
    assert compare_counts(recorded, one_lost).status is Status.CRITICAL
    assert compare_counts(recorded, one_lost, writes_since_load=1).status is Status.OK
    expired = {
        "by_category": {"cache": 985_000, "bullmq": 10_000},
        "volatile_by_category": {"cache": 5_000, "bullmq": 0},
    }
    check = compare_counts(recorded, expired)
    assert check.status is Status.OK, check.summary
    assert "5000 keys with a TTL expired since" in check.summary
    assert compare_counts(recorded | {"changes": 3}, one_lost).status is Status.OK


def test_totals_judgement() -> None:
    """The O(1) rule a restore applies first (INFO keyspace: keys and keys with a TTL
    over every database), on the same figures."""
    recorded = {
        "total": 1_000_000,
        "by_category": {"cache": 990_000, "bullmq": 10_000},
        "volatile_by_category": {"cache": 10_000, "bullmq": 0},
        "changes": 0,
    }

    def judged(keys: int, expires: int, writes: int = 0) -> CheckResult:
        check = compare_keyspace(recorded, keys, expires, writes)
        assert check is not None
        return check

    assert judged(1_000_000, 10_000).status is Status.OK
    one_lost = judged(999_999, 10_000)
    assert one_lost.status is Status.CRITICAL
    assert "989999 keys without a TTL, 990000 in the archive" in one_lost.summary
    assert judged(999_999, 10_000, writes=1).status is Status.OK
    expired = judged(995_000, 5_000)
    assert expired.status is Status.OK
    assert "5000 keys with a TTL expired since" in expired.summary
    assert judged(1_000_001, 10_001).status is Status.CRITICAL  # multiplied
    assert compare_keyspace({"total": 5, "by_category": {"cache": 5}}, 5, 0) is None  # pre-0.2


def test_an_archive_taken_under_writes_verifies_and_restores(lab_env: Lab, tmp_path: Path) -> None:
    """Issue 12, item 14: a writer adds keys without a TTL all through `backup create`
    (the count walk sees more keys than the RDB, the archived AOF more than the walk).
    The drill and the restore must not call such an archive broken; the writes the
    metadata counted are the allowance."""
    status, _ = lab_env
    port = status.port
    assert port is not None
    env = directory_env(lab_env, tmp_path)
    stop = threading.Event()
    written = [0]

    def writer() -> None:
        with redis.Redis(port=port) as client:
            while not stop.is_set() and written[0] < 2_000_000:
                pipe = client.pipeline(transaction=False)
                for n in range(written[0], written[0] + 200):
                    pipe.set(f"unknown:written-during-backup:{n}", n)
                pipe.execute()
                written[0] += 200

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        wait_until(lambda: written[0] >= 2_000, "the writer to get going")
        archive = create(env)
    finally:
        stop.set()
        thread.join()
    metadata = json.loads((tmp_path / "archives" / archive / "metadata.json").read_text())
    assert metadata["keys"]["changes"] > 0  # the writes during the backup were counted

    drill = run_cli("backup", "verify", "--archive", archive, env=env, timeout=300)
    assert drill.returncode == 0, drill.stdout + drill.stderr
    restored = run_cli("--yes", "recover", "restore", "--archive", archive, "--force",
                       "--i-understand-data-loss", env=env, timeout=300)  # fmt: skip
    assert restored.returncode == 0, restored.stdout + restored.stderr
