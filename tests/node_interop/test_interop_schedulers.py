"""Issue 16 item 3: job schedulers (repeatable jobs) that vanished. Real Node BullMQ v5
registers them (`queue.upsertJobScheduler`); `queues status` lists them with their next
run, the exporter counts them, and after an emergency start (data moved aside, Redis
empty) the follow-up text, the monitor and `checklist daily` name the missing ones."""

from __future__ import annotations

import contextlib
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from redis_runbook.config import Config
from redis_runbook.lab.server import RedisServer
from redis_runbook.monitoring.exporter import scrape_text
from tests.support.backup import create, directory_env
from tests.support.cli import process_cli, run_cli, target_env
from tests.support.config import merged, write_config
from tests.support.lab import Lab
from tests.support.node import NodeLauncher
from tests.support.servers import plain_client

EXPECTED = {
    "bullmq": {
        "expected_schedulers": [
            {"queue": "reports", "id": "hourly-report"},
            {"queue": "ticks", "id": "every-minute"},
        ]
    }
}


def register(node: NodeLauncher, server: RedisServer) -> None:
    """Two schedulers as an application registers them at start-up: one `every`,
    one cron `pattern`."""
    url = server.target().url
    node.run(
        "scheduler.js",
        {"queue": "ticks", "id": "every-minute", "repeat": {"every": 60000}, "name": "tick"},
        redis_url=url,
    )
    node.run(
        "scheduler.js",
        {
            "queue": "reports",
            "id": "hourly-report",
            "repeat": {"pattern": "0 * * * *"},
            "name": "report",
            "data": {"kind": "hourly"},
        },
        redis_url=url,
    )


def next_run(server: RedisServer, queue: str, scheduler: str) -> int:
    """The scheduler's score in its queue's `repeat` set: its next run, epoch ms."""
    score: Any = plain_client(server).zscore(f"bull:{queue}:repeat", scheduler)
    return int(score)


def flat(text: str) -> str:
    """Rich wraps long lines where the console width puts it."""
    return " ".join(text.split())


def test_status_lists_node_schedulers_and_the_exporter_counts_them(
    tmp_path: Path, node: NodeLauncher, redis_server: RedisServer
) -> None:
    register(node, redis_server)
    env = target_env(tmp_path, redis_server)

    result = run_cli("queues", "status", "--json", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    queues = {q["queue"]: q for q in json.loads(result.stdout)["queues"]}
    [tick] = queues["ticks"]["schedulers"]
    assert queues["ticks"]["scheduler_count"] == 1
    assert tick["id"] == "every-minute"
    assert tick["kind"] == "scheduler"
    assert tick["name"] == "tick"
    assert tick["every"] == 60000
    assert tick["pattern"] is None
    assert tick["next_ms"] == next_run(redis_server, "ticks", "every-minute")
    [report] = queues["reports"]["schedulers"]
    assert report["id"] == "hourly-report"
    assert report["pattern"] == "0 * * * *"
    assert report["every"] is None
    assert report["next_ms"] == next_run(redis_server, "reports", "hourly-report")
    assert report["next_ms"] % 3_600_000 == 0  # the top of an hour
    assert report["iterations"] == 1

    human = run_cli("queues", "status", env=env)
    assert human.returncode == 0, human.stderr
    text = flat(human.stdout)
    assert "job schedulers of ticks (1):" in text
    assert "every-minute: job 'tick' every 60000 ms, next" in text
    assert "hourly-report: job 'report' 0 * * * *, next" in text

    samples: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(scrape_text(Config(target=redis_server.target()))):
        for sample in family.samples:
            if sample.name == "bullmq_queue_schedulers":
                samples[(sample.labels["prefix"], sample.labels["queue"])] = sample.value
    assert samples == {("bull", "ticks"): 1, ("bull", "reports"): 1}


def _json(result: Any) -> dict[str, Any]:
    assert result.stdout, result.stderr
    return dict(json.loads(result.stdout))


def shut_down(server: RedisServer) -> None:
    """SHUTDOWN NOSAVE of whatever answers on the server's port: the Redis an
    emergency start launched is a new process the fixture does not know."""
    with contextlib.suppress(redis.RedisError):
        plain_client(server).shutdown(nosave=True)


def test_schedulers_gone_after_an_emergency_start_are_reported(
    tmp_path: Path, node: NodeLauncher, redis_server: RedisServer, request: pytest.FixtureRequest
) -> None:
    request.addfinalizer(lambda: shut_down(redis_server))
    register(node, redis_server)
    cli = process_cli(tmp_path, redis_server, EXPECTED)

    before = _json(cli.run("checklist", "daily", "--json"))
    [item] = [i for i in before["items"] if "job schedulers" in i["title"]]
    assert item["status"] == "OK", item
    assert item["detail"] == "all 2 expected job scheduler(s) are registered"
    monitor = _json(cli.run("monitor", "--once", "--json"))
    assert not [n for n in monitor["not_ok"] if "schedulers" in n["key"]], monitor

    result = cli.run("--yes", "recover", "emergency-start", "--force", "--i-understand-data-loss")
    assert result.returncode == 0, result.stdout + result.stderr
    missing = "2 of 2 expected job scheduler(s) missing: reports/hourly-report, ticks/every-minute"
    assert missing in flat(result.stdout), result.stdout
    assert "upsertJobScheduler" in flat(result.stdout)
    assert plain_client(redis_server).dbsize() == 0

    monitor = _json(cli.run("monitor", "--once", "--json"))
    not_ok = {n["key"]: n for n in monitor["not_ok"]}
    for queue, scheduler in (("reports", "hourly-report"), ("ticks", "every-minute")):
        alert = not_ok[f"queue:bull:{queue}:queue_schedulers_missing"]
        assert alert["status"] == "CRITICAL"
        assert alert["summary"] == f"{queue}: job scheduler(s) missing: {scheduler}"
    assert "queue:bull:reports:queue_schedulers_missing" in monitor["firing"]

    after = cli.run("checklist", "daily", "--json")
    assert after.returncode == 2, after.stdout + after.stderr
    [item] = [i for i in _json(after)["items"] if "job schedulers" in i["title"]]
    assert item["status"] == "CRITICAL"
    assert item["detail"] == missing
    assert "upsertJobScheduler" in item["hint"]

    # The application starts again and registers them: all clear.
    register(node, redis_server)
    again = _json(cli.run("checklist", "daily", "--json"))
    [item] = [i for i in again["items"] if "job schedulers" in i["title"]]
    assert item["status"] == "OK"


def test_a_restore_of_an_older_archive_names_the_schedulers_it_lacks(
    lab_env: Lab, tmp_path: Path, node: NodeLauncher
) -> None:
    """The archive was made before the application registered its schedulers: the
    restore's last step names them."""
    status, _ = lab_env
    env = directory_env(lab_env, tmp_path)
    path = Path(env["REDIS_RUNBOOK_CONFIG"])
    write_config(path, merged(tomllib.loads(path.read_text()), EXPECTED))
    archive = create(env)
    url = f"redis://127.0.0.1:{status.port}/0"
    node.run("scheduler.js", {"queue": "ticks", "id": "every-minute"}, redis_url=url)

    result = run_cli("--yes", "recover", "restore", "--archive", archive, "--force",
                     "--i-understand-data-loss", env=env, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    text = flat(result.stdout)
    assert "next: the expected BullMQ job schedulers" in text
    assert (
        "2 of 2 expected job scheduler(s) missing: reports/hourly-report, ticks/every-minute"
        in text
    ), text
