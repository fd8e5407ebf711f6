"""The Sentinel switchover end to end on a real topology (1 master, 2 replicas,
3 redis-sentinel on loopback), issue 11 items 20 and 21:

- when `failover` reports success the replicas are linked to the new master and every
  Sentinel says so: `health` right afterwards is OK;
- the write pause on the old master is short and renewed while the tool runs, so a
  tool killed with SIGKILL mid-switch frees writes within seconds, not after
  failover-timeout + 35 s;
- the old master's clients are disconnected, but not Sentinel's own links."""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from redis_runbook.checks import run_health
from redis_runbook.checks.topology import TOPOLOGY_CHECKS
from redis_runbook.lab.topology import SERVICE, Topology
from tests.support.failover import cli, config_of, sentinel_toml
from tests.support.servers import plain_client
from tests.support.waiting import wait_until

DEFAULT_FAILOVER_TIMEOUT_MS = 180_000  # Sentinel's default: the old pause was 215 s


def test_health_is_ok_right_after_a_switchover(topology: Topology, tmp_path: Path) -> None:
    """Item 20: the last step waits until the replicas follow the new master (and the
    Sentinels see them do so); no waiting in the test between `failover` and `health`."""
    old = topology.master_port()
    done = cli(sentinel_toml(topology, tmp_path), "--yes", "--json", "failover")
    assert done.returncode == 0, done.stderr
    report = run_health(config_of(topology, tmp_path), {})
    found = {c.name: (c.status.name, c.summary) for c in report.checks}
    assert {name: found[name][0] for name in TOPOLOGY_CHECKS} == dict.fromkeys(
        TOPOLOGY_CHECKS, "OK"
    ), found
    new = topology.master_port()
    assert new != old
    last = json.loads(done.stdout)["results"][-1]
    assert last["step"] == "wait for the replicas to follow the new master"
    assert last["ok"]
    others = sorted(f"127.0.0.1:{s.port}" for s in topology.servers if s.port != new)
    assert f"2 of 2 replicas linked to 127.0.0.1:{new}" in last["message"]
    for address in others:
        assert address in last["message"]


@pytest.mark.parametrize("old_master_follows", [True, False], ids=["one-linked", "none-linked"])
def test_replicas_that_cannot_follow_are_named(
    topology: Topology, tmp_path: Path, old_master_follows: bool
) -> None:
    """Item 20, at the deadline: a replica whose link to the new master cannot come up
    (it authenticates as a user the new master does not have) is named with the reason
    as a warning; only when no replica at all is linked does the step fail."""
    old = topology.master_port()
    for server in topology.servers:
        if server.port != old or not old_master_follows:
            client = plain_client(server)
            client.config_set("masteruser", "nobody")  # used from the next link on
            client.config_set("masterauth", secrets.token_hex(8))
    done = cli(sentinel_toml(topology, tmp_path), "--yes", "--json", "failover")
    new = topology.master_port()
    assert new != old
    (stuck,) = [s.port for s in topology.servers if s.port not in (old, new)]
    if old_master_follows:
        assert done.returncode == 0, done.stderr
        last = json.loads(done.stdout)["results"][-1]
        assert last["step"] == "wait for the replicas to follow the new master"
        assert last["ok"]
        assert f"1 of 2 replicas linked to 127.0.0.1:{new}" in last["message"]
        assert f"127.0.0.1:{old} (lag" in last["message"]
        assert f"WARNING not linked after 30 s: 127.0.0.1:{stuck} (link down" in last["message"]
    else:
        assert done.returncode == 1, done.stderr
        said = " ".join(done.stderr.split())  # the error line may be wrapped
        assert "step 8 (wait for the replicas to follow the new master) failed" in said
        assert f"no replica linked to 127.0.0.1:{new} within 30 s" in said
        assert f"127.0.0.1:{stuck} (link down" in said
        assert f"127.0.0.1:{old} (link down" in said


def _blocked_write(port: int) -> bool:
    """True when a SET on `port` does not complete within a second (writes paused).
    The SET stays queued and runs when the pause ends: the key is the test's own."""
    client = redis.Redis(port=port, socket_timeout=1, retry=Retry(NoBackoff(), 0))
    try:
        client.set("test:pause-probe", secrets.token_hex(4))
    except redis.TimeoutError:
        return True
    finally:
        client.close()
    return False


def _write_completes(port: int) -> bool:
    client = redis.Redis(port=port, socket_timeout=2, retry=Retry(NoBackoff(), 0))
    try:
        return bool(client.set("test:after-kill", "1"))
    except redis.TimeoutError:
        return False
    finally:
        client.close()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_a_killed_tool_frees_writes_within_seconds(
    topology: Topology, tmp_path: Path, sig: signal.Signals
) -> None:
    """Item 21: SIGKILL (or Ctrl-C) the real CLI while it holds writes paused on the old
    master; a write there completes soon after, not after failover-timeout + 35 s (215 s
    with Sentinel's default failover-timeout, which this test sets). SIGKILL: the lease
    runs out; SIGINT: the interrupted step lifts the pause.

    The switch is made long for real: the replicas' default user may not run
    REPLICAOF/SLAVEOF, so Sentinel's promotion never happens and the tool waits for a
    new master (up to failover-timeout) with writes paused."""
    old = topology.master_port()
    for sentinel in topology.sentinels:
        client = redis.Redis(port=sentinel.port)
        client.execute_command(
            "SENTINEL", "SET", SERVICE, "failover-timeout", DEFAULT_FAILOVER_TIMEOUT_MS
        )
        client.close()
    for server in topology.servers:
        if server.port != old:
            plain_client(server).execute_command(
                "ACL", "SETUSER", "default", "-slaveof", "-replicaof"
            )
    config = sentinel_toml(topology, tmp_path)
    log = (tmp_path / "cli.log").open("w")
    tool = subprocess.Popen(
        [sys.executable, "-m", "redis_runbook", "--config", str(config), "--yes", "failover"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def paused() -> bool:
            if tool.poll() is not None:
                pytest.fail(f"the tool exited ({tool.returncode}) before pausing writes")
            return _blocked_write(old)

        wait_until(paused, "the tool to pause writes on the old master", timeout=60)
        tool.send_signal(sig)
        tool.wait(timeout=30)
        # The old single pause held writes for 215 s here; renewed 2 s pauses end soon.
        wait_until(lambda: _write_completes(old), "a write on the old master", timeout=60)
    finally:
        if tool.poll() is None:
            tool.kill()
            tool.wait(timeout=30)
        log.close()
    assert plain_client(topology.server_at(old)).execute_command("ROLE")[0] == "master"


def test_the_old_masters_clients_go_but_sentinel_links_stay(
    topology: Topology, tmp_path: Path
) -> None:
    """Item 21: `CLIENT KILL TYPE normal` also dropped Sentinel's links on the old master.
    An application connection is disconnected (it reconnects through Sentinel); a
    connection named the way Sentinel names its command links is left alone."""
    old = topology.server_at(topology.master_port())
    sentinel_like = plain_client(
        old, client_name=f"sentinel-{secrets.token_hex(4)}-cmd", single_connection_client=True
    )
    app = plain_client(old, client_name="app", single_connection_client=True)
    assert sentinel_like.ping()
    assert app.ping()
    done = cli(sentinel_toml(topology, tmp_path), "--yes", "failover")
    assert done.returncode == 0, done.stderr
    with pytest.raises(redis.ConnectionError):
        app.ping()
    assert sentinel_like.execute_command("ROLE")[0] == "slave"
    sentinel_like.close()
    app.close()
