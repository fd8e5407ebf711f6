"""`clients list | kill` and `perf report` on real servers: real blocked clients,
real connections killed, a real slow Lua script in the slow log."""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from redis_runbook.config import Config
from redis_runbook.lab.faults import FaultOptions, inject
from redis_runbook.lab.faults_live import BUSY_SCRIPT
from redis_runbook.lab.server import RedisServer
from redis_runbook.memory import MemoryFigures
from redis_runbook.perf import fragmentation_advice
from tests.support.cli import process_cli
from tests.support.servers import RedisFactory, plain_client
from tests.support.waiting import wait_until

MIB = 1024**2


def connection(server: RedisServer, name: str | None = None) -> redis.Connection:
    """One raw connection (no pool: it never reconnects behind our back)."""
    assert server.port is not None
    conn = redis.Connection(port=server.port, socket_timeout=5.0, client_name=name)
    conn.connect()
    return conn


def ping(conn: redis.Connection) -> object:
    conn.send_command("PING")
    return conn.read_response()


def client_id(conn: redis.Connection) -> int:
    conn.send_command("CLIENT", "ID")
    return int(str(conn.read_response()))


def connected_ids(server: RedisServer) -> set[int]:
    return {int(c["id"]) for c in plain_client(server).client_list()}


@contextlib.contextmanager
def blpop_client(server: RedisServer, key: str) -> Iterator[int]:
    """A client blocked in BLPOP on `key` (released by an LPUSH at the end); yields its id."""
    # Blocked until the LPUSH, however slow the machine (no BLPOP or socket timeout).
    blocked = plain_client(server, socket_timeout=None)
    blocked.client_setname("blocked-worker")
    own = int(str(blocked.client_id()))
    thread = threading.Thread(target=lambda: blocked.blpop([key], timeout=0), daemon=True)
    thread.start()
    control = plain_client(server)
    wait_until(
        lambda: any(c["id"] == str(own) and "b" in c["flags"] for c in control.client_list()),
        "the BLPOP client to block",
    )
    try:
        yield own
    finally:
        control.lpush(key, "release")
        thread.join(10)


def test_clients_kill_kills_exactly_that_client(
    tmp_path: Path, redis_factory: RedisFactory
) -> None:
    server = redis_factory()
    env = process_cli(tmp_path, server)
    victim, bystander = connection(server), connection(server)
    victim_id = client_id(victim)

    no_tty = env.run("clients", "kill", "--id", str(victim_id))
    assert no_tty.returncode == 3
    assert ping(victim) == b"PONG"

    dry = env.run("--dry-run", "clients", "kill", "--id", str(victim_id))
    assert dry.returncode == 0
    assert f"CLIENT KILL ID {victim_id}" in dry.stdout
    assert ping(victim) == b"PONG"

    done = env.run("--yes", "clients", "kill", "--id", str(victim_id))
    assert done.returncode == 0, done.stderr
    assert f"killed client id {victim_id}" in done.stdout
    with pytest.raises(redis.ConnectionError):
        ping(victim)
    assert ping(bystander) == b"PONG"
    assert victim_id not in connected_ids(server)
    assert [e["outcome"] for e in env.journal()] == ["started", "done", "finished"]


def test_clients_kill_unknown_or_own_id_changes_nothing(
    tmp_path: Path, redis_factory: RedisFactory
) -> None:
    server = redis_factory()
    env = process_cli(tmp_path, server)
    bystander = connection(server)
    tool = connection(server, name="redis-runbook")  # another redis-runbook process
    unknown = env.run("--yes", "clients", "kill", "--id", "987654")
    assert unknown.returncode == 2
    assert "no client with id 987654" in unknown.stderr
    assert str(client_id(bystander)) in unknown.stderr  # names the ids that exist
    assert "HINT: redis-runbook clients list" in unknown.stderr

    own = env.run("--yes", "clients", "kill", "--id", str(client_id(tool)))
    assert own.returncode == 3
    assert "redis-runbook connection" in own.stderr

    missing = env.run("--yes", "clients", "kill")
    assert missing.returncode == 2
    assert "needs --id" in missing.stderr

    assert ping(bystander) == b"PONG"
    assert ping(tool) == b"PONG"
    assert env.journal() == []


def test_clients_list_blocked_and_idle(tmp_path: Path, redis_factory: RedisFactory) -> None:
    server = redis_factory()
    env = process_cli(tmp_path, server)
    idle = connection(server, name="idle-one")
    with blpop_client(server, "queue:empty") as blocked_id:
        document = json.loads(env.run("clients", "list", "--blocked", "--json").stdout)
        assert [c["id"] for c in document["clients"]] == [blocked_id]
        entry = document["clients"][0]
        assert entry["cmd"] == "blpop"
        assert entry["name"] == "blocked-worker"
        assert entry["blocked"] is True
        assert set(entry) == {
            "id", "addr", "name", "age", "idle", "flags", "cmd", "db", "omem", "blocked",
        }  # fmt: skip

        everyone = json.loads(env.run("--json", "clients", "list").stdout)
        names = {c["name"] for c in everyone["clients"]}
        assert {"idle-one", "blocked-worker", "redis-runbook"} <= names
        assert everyone["count"] == len(everyone["clients"])

        table = env.run("clients", "list", "--blocked")
        assert table.returncode == 0
        assert "blpop" in table.stdout
        assert "idle-one" not in table.stdout

        perf = json.loads(env.run("perf", "report", "--json").stdout)
        assert perf["blocked_clients"] == {"total": 1, "by_command": {"blpop": 1}}
        assert any("clients list --blocked" in line for line in perf["advice"])

    long_idle = env.run("--json", "clients", "list", "--idle-over", "3600")
    assert json.loads(long_idle.stdout)["clients"] == []
    assert ping(idle) == b"PONG"


def test_perf_report_shows_a_slow_script(tmp_path: Path, redis_factory: RedisFactory) -> None:
    server = redis_factory(settings={"slowlog-log-slower-than": "0"})
    env = process_cli(tmp_path, server)
    client = plain_client(server)
    client.config_set("latency-monitor-threshold", "10")
    client.eval(BUSY_SCRIPT, 0, "30000")  # 30 ms of Lua

    result = env.run("perf", "report", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert {
        "target",
        "slowlog",
        "slowlog_len",
        "latency_latest",
        "latency_doctor",
        "memory_doctor",
        "fragmentation",
        "blocked_clients",
        "advice",
        "denied",
    } <= set(document)
    slow = [e for e in document["slowlog"] if e["command"].lower().startswith("eval")]
    assert slow, document["slowlog"]
    assert slow[0]["duration_us"] >= 30_000
    assert "pcall(function() return os.clock end)" in slow[0]["command"]  # the lab's script
    assert document["slowlog_threshold_us"] == 0
    assert any(e["event"] == "command" and e["max_ms"] >= 30 for e in document["latency_latest"])
    assert document["latency_doctor"]
    assert document["memory_doctor"]
    assert document["fragmentation"]["activedefrag"] in ("no", "yes")
    assert any("slowest took" in line for line in document["advice"])
    assert document["denied"] == {}

    human = env.run("perf", "report")
    assert human.returncode == 0
    for heading in ("SLOWLOG GET", "LATENCY LATEST", "LATENCY DOCTOR", "MEMORY DOCTOR"):
        assert heading in human.stdout
    assert "Fragmentation:" in human.stdout


def test_perf_report_on_a_down_server(tmp_path: Path, redis_factory: RedisFactory) -> None:
    server = redis_factory()
    env = process_cli(tmp_path, server)
    server.kill()
    result = env.run("perf", "report")
    assert result.returncode == 1
    assert "cannot connect" in result.stderr
    assert "Traceback" not in result.stderr


def memory(ratio: float, used: int, rss: int) -> MemoryFigures:
    return MemoryFigures(used, used, 0, "noeviction", rss, ratio, rss - used, 0)


def test_fragmentation_advice() -> None:
    config = Config()
    assert "no action" in fragmentation_advice(memory(1.1, 900 * MIB, 990 * MIB), "no", config)
    # A high ratio on a small instance wastes little: nothing to do.
    small = fragmentation_advice(memory(5.0, 2 * MIB, 10 * MIB), "no", config)
    assert "only 8.0 MiB wasted" in small
    big = fragmentation_advice(memory(2.0, 1024 * MIB, 2048 * MIB), "no", config)
    assert "CONFIG SET activedefrag yes" in big
    assert "recover restart" in big
    already = fragmentation_advice(memory(2.0, 1024 * MIB, 2048 * MIB), "yes", config)
    assert "activedefrag already on" in already
    swapped = fragmentation_advice(memory(0.5, 1024 * MIB, 512 * MIB), "no", config)
    assert "swapped out" in swapped


def hint_of(result: subprocess.CompletedProcess[str]) -> str:
    """The HINT: line the CLI printed."""
    hints = [line for line in result.stderr.splitlines() if line.startswith("HINT: ")]
    assert hints, result.stderr
    return hints[-1].removeprefix("HINT: ")


def test_on_a_busy_server_perf_and_clients_name_script_kill_and_it_works(
    tmp_path: Path, redis_factory: RedisFactory
) -> None:
    """Issue 11 item 10: during `lab break slow-script` (BUSY) `perf report`,
    `clients list` and `queues status` say Redis is busy and hint SCRIPT KILL with the
    target's -h/-p, not --help; `health` is CRITICAL with the same hint instead of every
    check UNKNOWN and an ACL hint; running the hint ends the script and the commands
    work again."""
    server = redis_factory({"busy-reply-threshold": "100"})
    env = process_cli(tmp_path, server)
    inject("slow-script", server, FaultOptions(seconds=60))
    with plain_client(server) as client:
        wait_until(lambda: busy(client), "BUSY replies")
    health = env.run("health")
    assert health.returncode == 2, health.stdout + health.stderr
    assert f"HINT (connection): redis-cli -h 127.0.0.1 -p {server.port} SCRIPT KILL" in " ".join(
        health.stdout.split()
    ), health.stdout
    assert "ACL" not in health.stdout
    # The monitor alerts on the connection alone (before, it also saw "connection OK"),
    # and every checklist item takes that verdict.
    cycle = json.loads(env.run("monitor", "--once", "--json").stdout)
    assert cycle["firing"] == ["redis:connection"], cycle
    assert [(o["key"], o["status"]) for o in cycle["not_ok"]] == [
        ("redis:connection", "CRITICAL")
    ], cycle
    daily = env.run("checklist", "daily", "--json")
    items = json.loads(daily.stdout)["items"]
    checked = [item for item in items if item["status"] != "MANUAL"]
    assert checked, items
    assert {(item["status"], "SCRIPT KILL" in item["hint"]) for item in checked} == {
        ("CRITICAL", True)
    }, items
    for command in (("perf", "report"), ("clients", "list"), ("queues", "status")):
        result = env.run(*command)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "busy" in result.stderr
        assert "Traceback" not in result.stderr
        hint = hint_of(result)
        assert hint.startswith(f"redis-cli -h 127.0.0.1 -p {server.port} SCRIPT KILL"), hint
    kill = subprocess.run(
        shlex.split(hint.split("   ")[0]), capture_output=True, text=True, timeout=30, check=False
    )
    assert kill.stdout.strip() == "OK", kill.stdout + kill.stderr
    assert env.run("perf", "report").returncode == 0
    assert env.run("clients", "list").returncode == 0


def busy(client: redis.Redis) -> bool:
    try:
        client.ping()
    except redis.ResponseError as exc:
        return str(exc).startswith("BUSY")
    return False


def test_on_a_paused_server_perf_and_clients_say_paused_and_the_hint_works(
    tmp_path: Path, redis_factory: RedisFactory
) -> None:
    """`lab break pause` (CLIENT PAUSE ALL): `perf report` and `clients list` do not
    time out with 'is redis-server running?': they say clients are paused and how
    to see the pause end (`health` works on a paused server: it reports it)."""
    server = redis_factory()
    env = process_cli(tmp_path, server)
    injected = inject("pause", server, FaultOptions(seconds=20))
    try:
        for command in (("perf", "report"), ("clients", "list")):
            result = env.run(*command)
            assert result.returncode == 1, result.stdout + result.stderr
            assert "clients are paused" in result.stderr
            hint = hint_of(result)
            assert "redis-runbook health --watch 2" in hint, hint
        health = env.run("health")
        assert health.returncode == 2
        assert "Traceback" not in health.stderr
    finally:
        injected.release()
    assert env.run("perf", "report").returncode == 0
