"""`checklist daily | weekly | monthly` on real servers: each automated item turns
with the real condition (memory filled, slow log written, a real archive and a real
restore drill, monitor history), manual items are listed, the exit code is the worst."""

from __future__ import annotations

import json
import time
from pathlib import Path

from redis_runbook.checklist import memory_trend, run_checklist
from redis_runbook.config import Band, Config, RunbookConfig, Thresholds, load_config
from redis_runbook.lab.server import RedisServer
from redis_runbook.monitoring.state import StateFiles
from redis_runbook.target import display_url
from tests.support.backup import backup_env, create
from tests.support.cli import run_cli
from tests.support.lab import Lab
from tests.support.servers import RedisFactory, fill_memory, plain_client

RELAXED = Thresholds(latency_ms=Band(warning=1000, critical=2000))


def statuses(items: list[dict[str, str]]) -> dict[str, str]:
    return {i["title"]: i["status"] for i in items}


def test_daily_follows_memory_and_lists_the_manual_item(redis_factory: RedisFactory) -> None:
    server = redis_factory({"maxmemory": "16mb"})
    env = {"REDIS_RUNBOOK_TARGET__URL": server.target().url}
    done = run_cli("--json", "checklist", "daily", env=env)
    assert done.returncode == 0, done.stderr
    items = statuses(json.loads(done.stdout)["items"])
    assert items["Check memory usage < 70%"] == "OK"
    assert items["Verify AOF sync is working"] == "OK"
    assert list(items.values()).count("MANUAL") == 1
    fill_memory(server, 75)
    done = run_cli("--json", "checklist", "daily", env=env)
    assert done.returncode == 1
    assert statuses(json.loads(done.stdout)["items"])["Check memory usage < 70%"] == "WARNING"


def test_weekly_reports_slow_log_patterns_and_a_missing_repository(
    redis_server: RedisServer,
) -> None:
    client = plain_client(redis_server)
    client.config_set("slowlog-log-slower-than", 0)
    for i in range(5):
        client.set(f"k{i}", "v")
    client.hgetall("nope")
    checklist = run_checklist("weekly", Config(target=redis_server.target(), thresholds=RELAXED))
    by_title = {i.name: i for i in checklist.checked}
    slow = by_title["Review slow log for patterns"]
    assert slow.status.name == "WARNING"
    assert "SET ×5" in slow.summary
    backup = by_title["Verify backup completion"]
    assert backup.status.name == "UNKNOWN"
    assert "no [backup] repository" in backup.summary


def test_weekly_and_monthly_with_a_real_archive(lab_env: Lab, tmp_path: Path) -> None:
    repo = tmp_path / "archives"
    repo.mkdir()
    env = backup_env(lab_env, tmp_path, "directory", repo)
    create(env)
    weekly = run_cli("--json", "checklist", "weekly", env=env)
    items = statuses(json.loads(weekly.stdout)["items"])
    assert items["Verify backup completion"] == "OK"
    monthly = run_cli("--json", "checklist", "monthly", env=env, timeout=180)
    document = json.loads(monthly.stdout)
    drill = next(i for i in document["items"] if i["title"] == "Test restore from backup")
    assert drill["status"] == "OK", drill
    assert drill["detail"].endswith(": ok")
    # No monitor history yet: the trend cannot be judged, and says how to get one.
    trend = next(i for i in document["items"] if i["title"] == "Review memory growth trend")
    assert trend["status"] == "UNKNOWN"
    assert "redis-runbook monitor" in trend["hint"]
    assert monthly.returncode == 3


def test_memory_trend_from_the_monitor_history(tmp_path: Path) -> None:
    config = load_config(env={}).config.model_copy(
        update={"runbook": RunbookConfig(state_dir=tmp_path)}
    )
    files = StateFiles(tmp_path, display_url(config.target.url))
    now = time.time()
    gib = 2**30
    # 10 days at +100 MiB/day from 5 GiB, maxmemory 8 GiB: 85 % (6.8 GiB) is ~9 days away.
    for day in range(10):
        used = 5 * gib + day * 100 * 2**20
        files.append_history(
            {"t": now - (9 - day) * 86_400, "used_memory": used, "maxmemory": 8 * gib}, keep_days=35
        )
    item = memory_trend(config, now=now)
    assert item.status.name == "WARNING"
    assert item.summary.startswith("+100.0 MiB/day over 9.0 days")
    assert "in 9 days" in item.summary
