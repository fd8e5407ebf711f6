"""The compose and systemd backends, tested by the exact commands they run.

Docker and systemd cannot run here, so `docker`, `systemctl` and `journalctl` are
stand-ins on PATH that record their argv and print a canned reply — the only
stand-ins the project allows. Redis itself is real: SAVE-before-stop is checked
against a real server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from redis_runbook.lab.server import RedisServer
from redis_runbook.service import RunState, ServiceError
from tests.support.servers import plain_client
from tests.support.stand_ins import BASE, StandIns, compose, systemd


@pytest.fixture
def stand_ins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StandIns:
    return StandIns(tmp_path, monkeypatch)


@pytest.mark.parametrize(
    ("reply", "state", "code"),
    [
        ('[{"Service":"redis","State":"running","Status":"Up 2 hours"}]', RunState.RUNNING, None),
        (
            '{"Service":"redis","State":"exited","Status":"Exited (137)","ExitCode":137}\n',
            RunState.STOPPED,
            137,
        ),
        (
            '{"Service":"redis","State":"paused","Status":"Up 1 hour (Paused)"}\n',
            RunState.HUNG,
            None,
        ),
        ("", RunState.STOPPED, None),
    ],
)
def test_compose_state(stand_ins: StandIns, reply: str, state: RunState, code: int | None) -> None:
    stand_ins.reply("docker", reply)
    seen = compose().state()
    assert seen.state is state
    assert seen.exit_code == code
    assert stand_ins.calls() == [[*BASE, "ps", "--all", "--format", "json", "redis"]]


def test_compose_commands(stand_ins: StandIns) -> None:
    service = compose()
    service.start()
    assert stand_ins.calls() == [[*BASE, "up", "-d", "redis"]]
    stand_ins.reply("docker", "line one\nline two\n")
    assert service.logs(tail=50) == ["line one", "line two"]
    assert stand_ins.calls() == [
        [*BASE, "logs", "--no-color", "--no-log-prefix", "--tail", "50", "redis"]
    ]
    stand_ins.reply("docker", "")  # ps: no running container
    service.stop(save=True)
    assert stand_ins.calls() == [
        [*BASE, "ps", "--all", "--format", "json", "redis"],
        [*BASE, "stop", "-t", "30", "redis"],
    ]


def test_compose_tools_run_in_the_container_or_a_one_off(stand_ins: StandIns) -> None:
    service = compose()
    argv = ["redis-check-aof", "/data/appendonlydir/appendonly.aof.manifest"]
    stand_ins.reply("docker", '[{"State":"running"}]')
    service.run_tool(argv)
    assert stand_ins.calls()[-1] == [*BASE, "exec", "-T", "redis", *argv]
    stand_ins.reply("docker", "")
    service.run_tool(argv)
    assert stand_ins.calls()[-1] == [
        *BASE,
        "run",
        "--rm",
        "--no-deps",
        "-T",
        "--entrypoint",
        "redis-check-aof",
        "redis",
        "/data/appendonlydir/appendonly.aof.manifest",
    ]
    assert service.data_dir_in_service == Path("/data")


def test_compose_stop_saves_a_running_redis_first(
    stand_ins: StandIns, redis_server: RedisServer
) -> None:
    client = plain_client(redis_server)
    client.set("k", "v")
    before = client.lastsave()
    stand_ins.reply("docker", '[{"State":"running"}]')
    compose(redis_server.target()).stop(save=True)
    assert client.info("persistence")["rdb_changes_since_last_save"] == 0
    assert client.lastsave() >= before
    assert stand_ins.calls()[-1] == [*BASE, "stop", "-t", "30", "redis"]
    client.close()


def test_compose_failure_names_the_command(stand_ins: StandIns) -> None:
    stand_ins.reply("docker", "no such service: redis\n", exit_code=1)
    with pytest.raises(ServiceError, match=r"docker compose -f .* up -d redis failed \(exit 1\)"):
        compose().start()
    assert compose().state().state is RunState.UNKNOWN


def test_missing_manager_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServiceError, match="docker is not installed or not on PATH"):
        compose().start()


def test_systemd_state_and_commands(stand_ins: StandIns) -> None:
    service = systemd()
    stand_ins.reply(
        "systemctl",
        f"ActiveState=active\nSubState=running\nMainPID={os.getpid()}\nExecMainStatus=0\n",
    )
    seen = service.state()
    assert seen.state is RunState.RUNNING
    assert seen.pid == os.getpid()
    assert stand_ins.calls() == [
        [
            "systemctl",
            "show",
            "redis-server",
            "--property",
            "ActiveState,SubState,MainPID,ExecMainStatus",
        ]
    ]
    stand_ins.reply(
        "systemctl", "ActiveState=failed\nSubState=failed\nMainPID=0\nExecMainStatus=1\n"
    )
    failed = service.state()
    assert failed.state is RunState.STOPPED
    assert failed.exit_code == 1
    stand_ins.calls()
    service.start()
    service.stop(save=False)
    assert stand_ins.calls() == [
        ["systemctl", "start", "redis-server"],
        ["systemctl", "stop", "redis-server"],
    ]
    stand_ins.reply("journalctl", "*** FATAL CONFIG FILE ERROR (Redis 7.0.15) ***\n")
    assert service.logs(tail=20) == ["*** FATAL CONFIG FILE ERROR (Redis 7.0.15) ***"]
    assert stand_ins.calls() == [
        ["journalctl", "-u", "redis-server", "-n", "20", "--no-pager", "-o", "cat"]
    ]
