"""The monitor against real servers and real peers: Redis filled past 85 % of
maxmemory, killed with SIGKILL and restarted; a real SMTP server (aiosmtpd, STARTTLS +
AUTH) and a real HTTP receiver. Time between cycles is advanced with an injected
clock where the test is about repeat intervals and backoff, and is real for the
daemon test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from redis_runbook.config import Band, Config, RunbookConfig, Thresholds
from redis_runbook.config.monitoring import (
    AlertsConfig,
    MonitorConfig,
    SmtpConfig,
    WebhookConfig,
)
from redis_runbook.errors import Refused
from redis_runbook.lab.seed import SeedPlan, seed
from redis_runbook.lab.server import RedisServer
from redis_runbook.monitoring.monitor import CycleReport, Monitor
from tests.support.cli import run_cli
from tests.support.config import merged, write_config
from tests.support.peers import SmtpPeer, WebhookPeer, running, start_smtp, start_webhook
from tests.support.servers import RedisFactory, fill_memory, plain_client
from tests.support.waiting import wait_until

SMTP_USER = "alerts@example.test"
CANARY = "canary-smtp-pw-7f3a9c"
HOOK_TOKEN = "T0KEN-canary-b4c1"
RELAXED = {"latency_ms": Band(warning=1000, critical=2000)}


class Clock:
    """Wall-clock time that the test moves forward."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpPeer]:
    peer = start_smtp(tmp_path, SMTP_USER, CANARY)
    yield peer
    peer.controller.stop()


@pytest.fixture
def hook() -> Iterator[WebhookPeer]:
    yield from running(start_webhook())


def smtp_config(tmp_path: Path, smtp: SmtpPeer, password: str = CANARY) -> SmtpConfig:
    secret = tmp_path / "smtp.pass"
    secret.write_text(password + "\n")
    return SmtpConfig(
        host="127.0.0.1",
        port=smtp.port,
        security="starttls",
        username=SMTP_USER,
        password_file=secret,
        tls_ca=smtp.ca,
        from_addr="redis-runbook@example.test",
        to=["devops@cerniq.app"],
    )


def monitor_config(
    server: RedisServer,
    tmp_path: Path,
    *,
    smtp: SmtpConfig | None = None,
    hook: WebhookPeer | None = None,
    queue_checks: bool = False,
    alerts: dict[str, Any] | None = None,
    **thresholds: object,
) -> Config:
    webhooks = [WebhookConfig(name="ops", url=hook.url())] if hook else []
    return Config(
        target=server.target(),
        thresholds=Thresholds.model_validate({**RELAXED, **thresholds}),
        runbook=RunbookConfig(state_dir=tmp_path / "state"),
        monitor=MonitorConfig(queue_checks=queue_checks),
        alerts=AlertsConfig(smtp=smtp, webhooks=webhooks, **(alerts or {})),
    )


def sent(report: CycleReport, key: str) -> list[str]:
    """The kinds notified for `key` this cycle."""
    return [n.kind for n in report.notifications if n.key == key]


def test_memory_past_85_pct_one_critical_email_and_webhook_then_one_resolved(
    redis_factory: RedisFactory, tmp_path: Path, smtp: SmtpPeer, hook: WebhookPeer
) -> None:
    server = redis_factory({"maxmemory": "16mb"})
    config = monitor_config(
        server,
        tmp_path,
        smtp=smtp_config(tmp_path, smtp),
        hook=hook,
        alerts={"repeat_interval_seconds": 3600},
    )
    keys = fill_memory(server, 88)
    clock = Clock()
    with Monitor(config, env={}, clock=clock) as monitor:
        first = monitor.cycle()
        assert sent(first, "redis:memory") == ["FIRING"]
        mails = [s for s in smtp.box.subjects() if "redis:memory" in s]
        assert len(mails) == 1
        assert mails[0].startswith("[redis-runbook] CRITICAL redis:memory")
        posts = [p for p in hook.inbox.posts if p["key"] == "redis:memory"]
        assert len(posts) == 1
        assert (posts[0]["kind"], posts[0]["status"]) == ("FIRING", "CRITICAL")
        assert smtp.box.logins == [(SMTP_USER, True)]

        for _ in range(4):  # stays critical: nothing until the repeat interval
            clock.advance(60)
            assert sent(monitor.cycle(), "redis:memory") == []
        assert len([s for s in smtp.box.subjects() if "redis:memory" in s]) == 1
        assert len([p for p in hook.inbox.posts if p["key"] == "redis:memory"]) == 1

        clock.advance(3600)
        assert sent(monitor.cycle(), "redis:memory") == ["REPEAT"]
        assert len([p for p in hook.inbox.posts if p["key"] == "redis:memory"]) == 2

        plain_client(server).delete(*keys)
        clock.advance(60)
        assert sent(monitor.cycle(), "redis:memory") == []  # one OK cycle is not enough
        clock.advance(60)
        assert sent(monitor.cycle(), "redis:memory") == ["RESOLVED"]
        clock.advance(60)
        assert sent(monitor.cycle(), "redis:memory") == []
    mails = [s for s in smtp.box.subjects() if "redis:memory" in s]
    assert len(mails) == 3
    assert mails[-1].startswith("[redis-runbook] RESOLVED redis:memory")
    resolved = [p for p in hook.inbox.posts if p["key"] == "redis:memory"][-1]
    assert (resolved["kind"], resolved["status"]) == ("RESOLVED", "OK")


def test_a_failing_sink_does_not_stop_the_other_and_is_retried_with_backoff(
    redis_server: RedisServer, tmp_path: Path, smtp: SmtpPeer, hook: WebhookPeer
) -> None:
    config = monitor_config(
        redis_server,
        tmp_path,
        smtp=smtp_config(tmp_path, smtp),
        hook=hook,
        alerts={"retry_base_seconds": 30},
        connected_clients=Band(warning=0, critical=1000),
    )
    hook.inbox.fail_with = 500
    clock = Clock()
    with Monitor(config, env={}, clock=clock) as monitor:
        first = monitor.cycle()
        assert sent(first, "redis:connected_clients") == ["FIRING"]
        assert len(smtp.box.messages) == 1  # email went out although the webhook failed
        failed = [d for d in first.deliveries if not d.ok]
        assert [(d.sink, d.error) for d in failed] == [("webhook:ops", "webhook:ops: HTTP 500")]
        assert first.queued == 1

        clock.advance(10)  # before the backoff: no new attempt
        second = monitor.cycle()
        assert [d for d in second.deliveries if d.sink == "webhook:ops"] == []
        assert second.queued == 1

        hook.inbox.fail_with = None
        clock.advance(31)
        third = monitor.cycle()
        retried = [d for d in third.deliveries if d.sink == "webhook:ops"]
        assert [(d.ok, d.attempts) for d in retried] == [(True, 2)]
        assert third.queued == 0
    assert [(p["kind"], p["key"]) for p in hook.inbox.posts] == [
        ("FIRING", "redis:connected_clients")
    ]
    assert len(smtp.box.messages) == 1


def test_queue_checks_fire_no_workers_at_once_and_stale_jobs_after_two_cycles(
    redis_server: RedisServer, tmp_path: Path, hook: WebhookPeer
) -> None:
    seed(redis_server.target(), SeedPlan())
    config = monitor_config(
        redis_server,
        tmp_path,
        hook=hook,
        queue_checks=True,
        queue_failed_per_min=Band(warning=0, critical=1000),
    )
    clock = Clock()
    with Monitor(config, env={}, clock=clock) as monitor:
        first = monitor.cycle()
        assert sent(first, "queue:bull:enrich-batch:queue_no_workers") == ["FIRING"]
        assert sent(first, "queue:bull:enrich-batch:queue_stale_jobs") == []  # pending
        # A paused queue holding jobs needs no worker.
        assert sent(first, "queue:bull:nurturing:queue_no_workers") == []
        clock.advance(60)
        plain_client(redis_server).zadd("bull:outreach-send:failed", {"x1": 1, "x2": 2})
        second = monitor.cycle()
        assert sent(second, "queue:bull:enrich-batch:queue_stale_jobs") == ["FIRING"]
        assert sent(second, "queue:bull:outreach-send:queue_failed_growth") == ["FIRING"]
    stale = [p for p in hook.inbox.posts if p["key"].endswith("enrich-batch:queue_stale_jobs")]
    assert "queues recover-stale --queue enrich-batch" in stale[0]["hint"]


def test_unreadable_state_is_moved_aside_and_a_second_monitor_is_refused(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    config = monitor_config(redis_server, tmp_path)
    with Monitor(config, env={}) as monitor:
        monitor.cycle()
        monitor.files.state_path.write_text("{not json")
        report = monitor.cycle()
        assert any("moved aside" in note for note in report.notes)
        asides = list(monitor.files.state_dir.glob("monitor-*.json.*.unreadable"))
        assert [p.read_text() for p in asides] == ["{not json"]
        with pytest.raises(Refused, match="monitor"), Monitor(config, env={}):
            pass


# --- the CLI: cron mode, the daemon, secrets ----------------------------------------------


def config_and_env(
    tmp_path: Path, server: RedisServer, extra: Mapping[str, Any]
) -> tuple[Path, dict[str, str]]:
    """tmp_path/runbook.toml for `server` (latency relaxed) plus `extra`, and the env
    to run the CLI with (no REDIS_RUNBOOK_* of ours, XDG state under tmp_path)."""
    state = tmp_path / "state"
    base_config = {
        "target": {"url": server.target().url},
        "runbook": {"state_dir": str(state)},
        "thresholds": {"latency_ms": {"warning": 1000, "critical": 2000}},
    }
    path = write_config(tmp_path / "runbook.toml", merged(base_config, extra))
    base = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_RUNBOOK_")}
    return path, {**base, "XDG_STATE_HOME": str(tmp_path / "xdg")}


def cli(config: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("--config", str(config), *args, env=env)


def test_once_under_cron_remembers_what_it_sent(
    redis_server: RedisServer, tmp_path: Path, hook: WebhookPeer
) -> None:
    config, env = config_and_env(
        tmp_path,
        redis_server,
        {
            "monitor": {"queue_checks": False},
            "alerts": {"webhooks": [{"url": hook.url()}]},
            "thresholds": {"connected_clients": {"warning": 0, "critical": 1000}},
        },
    )
    first = cli(config, env, "monitor", "--once")
    assert first.returncode == 0, first.stderr
    assert "alert FIRING redis:connected_clients" in first.stdout
    second = cli(config, env, "--json", "monitor", "--once")
    assert second.returncode == 0, second.stderr
    document = json.loads(second.stdout)
    assert document["notifications"] == []
    assert document["firing"] == ["redis:connected_clients"]
    assert [p["key"] for p in hook.inbox.posts] == ["redis:connected_clients"]


def test_secrets_never_appear_in_output_state_or_payloads(
    redis_server: RedisServer, tmp_path: Path, smtp: SmtpPeer, hook: WebhookPeer
) -> None:
    secret = tmp_path / "smtp.pass"
    secret.write_text(CANARY + "\n")
    config, env = config_and_env(
        tmp_path,
        redis_server,
        {
            "monitor": {"queue_checks": False},
            "alerts": {
                "smtp": {
                    "host": "127.0.0.1",
                    "port": smtp.port,
                    "username": "wrong-user",
                    "password_file": str(secret),
                    "tls_ca": str(smtp.ca),
                    "to": ["devops@cerniq.app"],
                },
                "webhooks": [{"url_env": "HOOK_URL", "format": "slack"}],
            },
            "thresholds": {"connected_clients": {"warning": 0, "critical": 1000}},
        },
    )
    env["HOOK_URL"] = hook.url(f"/services/{HOOK_TOKEN}")
    hook.inbox.fail_with = 403
    first = cli(config, env, "-v", "monitor", "--once")
    assert first.returncode == 1, first.stderr  # a notification could not be delivered
    second = cli(config, env, "--json", "monitor", "--once")
    assert second.returncode == 0, second.stderr  # nothing due: both wait for their backoff
    assert json.loads(second.stdout)["queued"] == 2
    outputs = [first.stdout + first.stderr, second.stdout + second.stderr]
    assert "login refused (535)" in outputs[0], outputs[0]
    assert "HTTP 403" in outputs[0]
    assert set(smtp.box.logins) == {("wrong-user", False)}  # smtplib tries PLAIN, then LOGIN
    config_shown = cli(config, env, "config", "show")
    outputs.append(config_shown.stdout + config_shown.stderr)
    files = [p.read_text(errors="replace") for p in (tmp_path / "state").rglob("*") if p.is_file()]
    for text in outputs + files:
        assert CANARY not in text
        assert HOOK_TOKEN not in text
    # Fixed: the queued webhook notification is delivered with Slack's payload.
    hook.inbox.fail_with = None
    for entry_file in (tmp_path / "state").glob("monitor-*.json"):
        state = json.loads(entry_file.read_text())
        for entry in state["outbox"]:
            entry["next_at"] = 0
        entry_file.write_text(json.dumps(state))
    cli(config, env, "monitor", "--once")
    assert hook.inbox.paths == [f"/services/{HOOK_TOKEN}"]
    assert set(hook.inbox.posts[0]) == {"text"}
    assert "redis:connected_clients" in hook.inbox.posts[0]["text"]


def test_daemon_reports_redis_down_within_an_interval_and_resolves_after_restart(
    redis_server: RedisServer, tmp_path: Path, hook: WebhookPeer
) -> None:
    config, env = config_and_env(
        tmp_path,
        redis_server,
        {
            "monitor": {"interval_seconds": 1},
            "alerts": {"resolve_after_cycles": 2, "webhooks": [{"url": hook.url()}]},
        },
    )
    daemon = subprocess.Popen(
        [sys.executable, "-m", "redis_runbook", "--config", str(config), "monitor"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert daemon.stdout is not None
        assert "OK" in daemon.stdout.readline()  # the first cycle ran
        redis_server.kill(signal.SIGKILL)

        def notified(kind: str) -> bool:
            return any(
                (p["kind"], p["key"]) == (kind, "redis:connection") for p in hook.inbox.posts
            )

        wait_until(lambda: notified("FIRING"), timeout=15, what="RedisDown notification")
        down = next(p for p in hook.inbox.posts if p["key"] == "redis:connection")
        assert down["status"] == "CRITICAL"
        redis_server.start()
        wait_until(lambda: notified("RESOLVED"), timeout=15, what="resolved notification")
        assert daemon.poll() is None  # it survived the outage
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=15)
    assert daemon.returncode == 0
    assert "Traceback" not in stderr
    # Nothing else: the queue checks reconnect quietly after the restart.
    assert [(p["kind"], p["key"]) for p in hook.inbox.posts] == [
        ("FIRING", "redis:connection"),
        ("RESOLVED", "redis:connection"),
    ]


def test_config_show_hides_an_inline_webhook_url_path(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "runbook.toml",
        {"alerts": {"webhooks": [{"url": f"https://hooks.example/services/{HOOK_TOKEN}"}]}},
    )
    done = cli(config, {**os.environ, "XDG_STATE_HOME": str(tmp_path)}, "config", "show")
    assert done.returncode == 0, done.stderr
    assert 'url = "https://hooks.example/***"' in done.stdout
    assert HOOK_TOKEN not in done.stdout


# --- issue 12 items 10 and 12: state that cannot be saved, a clock that jumps ---------------


def _cron_setup(
    tmp_path: Path, server: RedisServer, smtp: SmtpPeer, hook: WebhookPeer
) -> tuple[Path, dict[str, str], Path]:
    """A cron-style config firing connected_clients (WARNING), with SMTP and a webhook;
    the runtime dir (the state's second location) is the test's own."""
    secret = tmp_path / "smtp.pass"
    secret.write_text(CANARY + "\n")
    config, env = config_and_env(
        tmp_path,
        server,
        {
            "monitor": {"queue_checks": False},
            "alerts": {
                "smtp": {
                    "host": "127.0.0.1",
                    "port": smtp.port,
                    "username": SMTP_USER,
                    "password_file": str(secret),
                    "tls_ca": str(smtp.ca),
                    "to": ["devops@cerniq.app"],
                },
                "webhooks": [{"name": "ops", "url": hook.url()}],
            },
            "thresholds": {"connected_clients": {"warning": 0, "critical": 1000}},
        },
    )
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env["XDG_RUNTIME_DIR"] = str(runtime)
    return config, env, tmp_path / "state"


def _three_runs_deliver_once(
    config: Path, env: dict[str, str], smtp: SmtpPeer, hook: WebhookPeer
) -> list[subprocess.CompletedProcess[str]]:
    runs = [cli(config, env, "monitor", "--once") for _ in range(3)]
    for run in runs:
        assert run.returncode == 0, run.stderr
        assert "Traceback" not in run.stderr, run.stderr
        errors = [line for line in run.stderr.splitlines() if line.startswith("ERROR")]
        assert len(errors) == 1, run.stderr  # one clear line, every run
        assert "monitor state" in errors[0]
    assert "alert FIRING redis:connected_clients" in runs[0].stdout
    assert [(p["kind"], p["key"]) for p in hook.inbox.posts] == [
        ("FIRING", "redis:connected_clients")
    ]
    mails = [s for s in smtp.box.subjects() if "connected_clients" in s]
    assert len(mails) == 1
    assert mails[0].startswith("[redis-runbook] WARNING redis:connected_clients")
    return runs


def test_an_immutable_state_file_neither_storms_nor_crashes(
    redis_server: RedisServer, tmp_path: Path, smtp: SmtpPeer, hook: WebhookPeer
) -> None:
    """chattr +i on the state file: the state goes to the second location, the alert
    is sent once over three cron runs, each run says so in one line."""
    config, env, state = _cron_setup(tmp_path, redis_server, smtp, hook)
    quiet = config.read_text().replace(
        "warning = 0\ncritical = 1000", "warning = 900\ncritical = 1000"
    )
    config.write_text(quiet)
    assert cli(config, env, "monitor", "--once").returncode == 0  # saves an empty state
    [state_file] = state.glob("monitor-*.json")
    config.write_text(quiet.replace("warning = 900", "warning = 0"))
    subprocess.run(["chattr", "+i", str(state_file)], check=True)
    try:
        runs = _three_runs_deliver_once(config, env, smtp, hook)
    finally:
        subprocess.run(["chattr", "-i", str(state_file)], check=True)
    assert str(state_file) in runs[0].stderr
    assert list((tmp_path / "runtime").rglob("monitor-*.json"))


def test_a_read_only_state_dir_still_delivers_once(
    redis_server: RedisServer, tmp_path: Path, smtp: SmtpPeer, hook: WebhookPeer
) -> None:
    """state_dir on a read-only mount: the lock and the state fall back to the runtime
    dir; the warning is delivered on the first run and not again."""
    config, env, state = _cron_setup(tmp_path, redis_server, smtp, hook)
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(state)], check=True)
    try:
        runs = _three_runs_deliver_once(config, env, smtp, hook)
    finally:
        subprocess.run(["umount", str(state)], check=True)
    assert "Read-only file system" in runs[0].stderr
    assert list((tmp_path / "runtime").rglob("monitor-*.json"))


def test_the_daemon_remembers_in_memory_when_no_state_can_be_written(
    redis_server: RedisServer, tmp_path: Path, hook: WebhookPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither location writable (the state dir and the runtime/temp dir both read-only
    mounts): the monitor object keeps its state in memory, so a cycle does not re-send
    what the previous one sent."""
    config = monitor_config(
        redis_server, tmp_path, hook=hook, connected_clients=Band(warning=0, critical=1000)
    )
    state = tmp_path / "state"
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    (runtime / "redis-runbook").mkdir(mode=0o700)  # the fallback dir, then made read-only
    mounts = [state, runtime / "redis-runbook"]
    state.mkdir()
    for path in mounts:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=1m,mode=0700", "tmpfs", str(path)], check=True
        )
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setattr(tempfile, "tempdir", str(runtime / "redis-runbook"))  # no 2nd way out
    try:
        clock = Clock()
        with Monitor(config, env={}, clock=clock) as monitor:
            first = monitor.cycle()
            assert sent(first, "redis:connected_clients") == ["FIRING"]
            assert len(first.errors) == 1
            assert "kept in memory only" in first.errors[0]
            for _ in range(3):
                clock.advance(60)
                report = monitor.cycle()
                assert sent(report, "redis:connected_clients") == []
                assert report.errors == []  # said once, not every cycle
    finally:
        for path in mounts:
            subprocess.run(["umount", str(path)], check=True)
    assert [(p["kind"], p["key"]) for p in hook.inbox.posts] == [
        ("FIRING", "redis:connected_clients")
    ]


def test_a_clock_that_jumped_back_does_not_hold_mail(
    redis_server: RedisServer, tmp_path: Path, smtp: SmtpPeer, hook: WebhookPeer
) -> None:
    """Both sinks fail, their retry is scheduled; the clock then jumps back a day (it
    had been a day ahead): an entry due further ahead than retry_max_seconds is due now."""
    config = monitor_config(
        redis_server,
        tmp_path,
        smtp=smtp_config(tmp_path, smtp, password="wrong"),
        hook=hook,
        alerts={"retry_base_seconds": 30, "retry_max_seconds": 600},
        connected_clients=Band(warning=0, critical=1000),
    )
    hook.inbox.fail_with = 500
    clock = Clock()
    with Monitor(config, env={}, clock=clock) as monitor:
        first = monitor.cycle()
        assert sent(first, "redis:connected_clients") == ["FIRING"]
        assert first.queued == 2
        hook.inbox.fail_with = None
        (tmp_path / "smtp.pass").write_text(CANARY + "\n")
        clock.advance(10)  # within the backoff: nothing is due
        assert monitor.cycle().deliveries == []
        clock.advance(-86_400)
        third = monitor.cycle()
        assert sorted((d.sink, d.ok) for d in third.deliveries) == [
            (f"smtp:127.0.0.1:{smtp.port}", True),
            ("webhook:ops", True),
        ]
        assert third.queued == 0
    assert [(p["kind"], p["key"]) for p in hook.inbox.posts] == [
        ("FIRING", "redis:connected_clients")
    ]
    assert len([s for s in smtp.box.subjects() if "connected_clients" in s]) == 1
