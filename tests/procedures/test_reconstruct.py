"""`queues reconstruct` through the real CLI: a real PostgreSQL (initdb/pg_ctl as an
unprivileged user, loopback, free port) with the seed's example tables, a real
Redis, jobs written by the official Python bullmq 2.x — and every bad input
refused with one line, the DSN's password never shown, nothing enqueued."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
import redis
from bullmq import Queue

from redis_runbook.cli.reconstruct import parse_since
from redis_runbook.config import Config
from redis_runbook.lab.pg_example import ExampleRows, create_example, example_sources
from redis_runbook.lab.postgres import FAST_SETTINGS, PostgresServer
from redis_runbook.lab.server import RedisServer
from redis_runbook.ports import free_port
from tests.support.cli import CliEnv, process_cli, run_cli
from tests.support.node import NodeLauncher
from tests.support.servers import RedisFactory, plain_client

PASSWORD = "pg-S3cret:with/odd@chars"
WRONG_PASSWORD = "not-the-Passw0rd"


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    """One PostgreSQL for the module (fsync off); each test gets its own database.
    Its directory is a fresh one right under /tmp, which the unprivileged user the
    server runs as (when we are root) can reach without any capability."""
    workdir = Path(tempfile.mkdtemp(prefix="rr-test-pg-"))
    server = PostgresServer(workdir, settings=FAST_SETTINGS)
    try:
        server.init(PASSWORD)
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def dsn(pg: PostgresServer, request: pytest.FixtureRequest) -> str:
    """A fresh database holding the example tables (300 prospects, 150 outreach)."""
    name = "t_" + request.node.name.lower().replace("[", "_").replace("]", "")[:50]
    with psycopg.connect(pg.dsn(PASSWORD, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    pg.create_database(PASSWORD, name)
    url = pg.dsn(PASSWORD, name)
    create_example(url, ExampleRows())
    return url


def setup(
    tmp_path: Path,
    server: RedisServer,
    dsn: str,
    sources: list[dict[str, Any]] | None = None,
    **reconstruct: Any,
) -> CliEnv:
    """A config for `server` with a [reconstruct] section reading `dsn` from a
    0600 file."""
    dsn_file = tmp_path / "pg.dsn"
    dsn_file.write_text(dsn + "\n")
    dsn_file.chmod(0o600)
    section = {"dsn_file": str(dsn_file), **reconstruct, "sources": sources or example_sources()}
    return process_cli(tmp_path, server, {"reconstruct": section})


def source(base: str = "enrich", **changes: Any) -> dict[str, Any]:
    """One of the example sources (by name) with some keys changed."""
    found = next(s for s in example_sources() if s["name"] == base)
    return {**found, **changes}


def no_secret(*texts: str) -> None:
    """Neither password appears anywhere in `texts`."""
    for text in texts:
        assert PASSWORD not in text
        assert WRONG_PASSWORD not in text
        assert "S3cret" not in text


def job(client: redis.Redis, queue: str, job_id: str) -> dict[str, Any]:
    """A job hash with data and opts parsed."""
    fields: dict[str, Any] = client.hgetall(f"bull:{queue}:{job_id}")  # type: ignore[assignment]
    return {**fields, "data": json.loads(fields["data"]), "opts": json.loads(fields["opts"])}


def test_hundred_thousand_rows_become_exactly_as_many_jobs_once(
    tmp_path: Path, redis_factory: RedisFactory, dsn: str
) -> None:
    # 133,333 rows, every 4th not pending: exactly 100,000 pending, 1,000 outreach rows.
    create_example(dsn, ExampleRows(prospects=133_333, outreach=1_000), replace=True)
    redis_server = redis_factory(settings={"maxmemory": "512mb"})
    env = setup(tmp_path, redis_server, dsn)
    client = plain_client(redis_server)

    first = env.run("--yes", "--json", "queues", "reconstruct", "--source", "enrich", timeout=120)
    assert first.returncode == 0, first.stderr
    figures = json.loads(first.stdout)["sources"]
    assert figures == [
        {**figures[0], "source": "enrich", "queue": "enrich-batch", "selected": 100_000,
         "added": 100_000, "already_present": 0, "failed": 0, "problem": None}
    ]  # fmt: skip
    assert client.llen("bull:enrich-batch:wait") == 100_000
    assert client.exists("bull:outreach-send:meta", "bull:outreach-send:wait") == 0
    # FIFO in row order: the oldest row is taken first (workers pop from the right).
    assert client.lindex("bull:enrich-batch:wait", -1) == "enrich-1"
    assert client.lindex("bull:enrich-batch:wait", 0) == "enrich-133333"
    first_job = job(client, "enrich-batch", "enrich-1")
    assert first_job["name"] == "enrich"
    assert first_job["data"] == {"prospectId": 1, "sourceType": "onrc", "cui": "RO10000001"}
    assert first_job["opts"]["attempts"] == 3
    assert first_job["opts"]["backoff"] == {"type": "exponential", "delay": 5000}
    assert first_job["opts"]["removeOnComplete"] == 1000
    assert first_job["opts"]["removeOnFail"] == 5000
    assert job(client, "enrich-batch", "enrich-133333")["data"]["cui"] == "RO10133333"
    # Rows that are not pending (every 4th) were not enqueued.
    assert client.exists(*[f"bull:enrich-batch:enrich-{i}" for i in range(4, 400, 4)]) == 0

    second = env.run("--yes", "--json", "queues", "reconstruct", "--source", "enrich", timeout=120)
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)["sources"][0]
    assert (again["selected"], again["added"], again["already_present"]) == (100_000, 0, 100_000)
    assert client.llen("bull:enrich-batch:wait") == 100_000
    journaled = [e for e in env.journal() if e["step"] == "source enrich"]
    assert [(e["outcome"], e["figures"]["added"]) for e in journaled] == [
        ("done", 100_000),
        ("done", 0),
    ]
    assert journaled[1]["figures"]["already_present"] == 100_000
    no_secret(first.stdout, first.stderr, second.stdout, json.dumps(env.journal()))


def test_dry_run_counts_and_checks_rows_and_enqueues_nothing(
    tmp_path: Path, redis_server: RedisServer, dsn: str
) -> None:
    env = setup(tmp_path, redis_server, dsn)
    result = env.run("--dry-run", "queues", "reconstruct")
    assert result.returncode == 0, result.stderr
    assert "dry run: nothing was changed" in result.stdout
    assert "source enrich: enqueue 225 rows into enrich-batch" in result.stdout
    assert "source outreach: enqueue 113 rows into outreach-send" in result.stdout
    assert "SELECT id, source_type, cui FROM prospects WHERE enrichment_status" in result.stdout
    assert "postgresql://runbook:***@127.0.0.1:" in result.stdout
    as_json = env.run("--dry-run", "--json", "queues", "reconstruct", "--queue", "outreach-send")
    document = json.loads(as_json.stdout)
    assert document["dry_run"] is True
    assert [(s["source"], s["selected"]) for s in document["scans"]] == [("outreach", 113)]
    assert plain_client(redis_server).dbsize() == 0
    assert env.journal() == []
    no_secret(result.stdout, result.stderr, as_json.stdout)


def test_paused_queue_gets_its_jobs_in_the_paused_list(
    tmp_path: Path, redis_server: RedisServer, dsn: str
) -> None:
    async def pause() -> None:
        queue = Queue("outreach-send", {"connection": {"port": redis_server.port}})
        await queue.pause()
        await queue.close()

    asyncio.run(pause())
    env = setup(tmp_path, redis_server, dsn)
    result = env.run("--yes", "queues", "reconstruct", "--source", "outreach")
    assert result.returncode == 0, result.stderr
    assert "queue outreach-send is paused: its jobs go to the `paused` list" in result.stdout
    client = plain_client(redis_server)
    assert client.llen("bull:outreach-send:paused") == 113
    assert client.llen("bull:outreach-send:wait") == 0


def test_since_is_a_sql_parameter(tmp_path: Path, redis_server: RedisServer, dsn: str) -> None:
    # Rows are created 1 ms apart from 2026-01-01T00:00:00Z: row g at g ms.
    plain = source("outreach", name="all-outreach", sql="SELECT id, channel, prospect_id "
                   "FROM outreach_queue WHERE status = 'pending' ORDER BY id")  # fmt: skip
    env = setup(tmp_path, redis_server, dsn, [source(), plain])
    result = env.run(
        "--dry-run", "--json", "queues", "reconstruct", "--since", "2026-01-01T00:00:00.200Z"
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert {s["source"]: s["selected"] for s in document["scans"]} == {
        "enrich": 75,  # rows 200..300: 101, of which 26 (every 4th) not pending
        "all-outreach": 113,
    }
    assert (
        "source all-outreach does not use %(since)s: --since does not narrow it"
        in document["plan"]["notes"]
    )


def test_column_types_become_the_json_a_node_producer_sends(
    tmp_path: Path, redis_server: RedisServer, dsn: str
) -> None:
    typed = source(
        sql="SELECT id, created_at, id * 1.5 AS amount, jsonb_build_object('tags', "
        "jsonb_build_array('a', id)) AS extra, NULL::text AS note, id %% 2 = 0 AS even "
        "FROM prospects WHERE id = 3",
        job_id="typed-{id:05d}",
        data={"at": "created_at", "amount": "amount", "extra": "extra", "note": "note",
              "even": "even"},
    )  # fmt: skip
    env = setup(tmp_path, redis_server, dsn, [typed])
    result = env.run("--yes", "queues", "reconstruct")
    assert result.returncode == 0, result.stderr
    assert job(plain_client(redis_server), "enrich-batch", "typed-00003")["data"] == {
        "at": "2026-01-01T00:00:00.003Z",
        "amount": "4.5",
        "extra": {"tags": ["a", 3]},
        "note": None,
        "even": False,
    }


def test_unknown_source_or_queue_lists_the_valid_names(
    tmp_path: Path, redis_server: RedisServer, dsn: str
) -> None:
    env = setup(tmp_path, redis_server, dsn)
    result = env.run("--yes", "queues", "reconstruct", "--source", "enrichment")
    assert result.returncode == 2
    assert "unknown source enrichment; configured sources: enrich, outreach" in result.stderr
    result = env.run("--yes", "queues", "reconstruct", "--queue", "enrich:batch")
    assert result.returncode == 2
    assert "queues with sources: enrich-batch, outreach-send" in result.stderr
    assert "HINT:" in result.stderr
    assert plain_client(redis_server).dbsize() == 0


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        (
            {"sql": "SELECT id, source_type, cui FROM prospect ORDER BY id"},
            'source broken: SQL error [42P01]: relation "prospect" does not exist',
        ),
        (
            {"job_id": "enrich-{prospect_id}"},
            "source broken: the query returns no column prospect_id",
        ),
        (
            {"data": {"prospectId": "id", "region": "county"}},
            "source broken: the query returns no column county",
        ),
        ({"job_id": "{id}"}, "source broken: row 1 (id=1): job_id '{id}' gives job id '1' is all"),
        (
            {"sql": "SELECT id, source_type, cui || CASE WHEN id = 299 THEN ':x' ELSE '' END "
                    "AS cui FROM prospects ORDER BY id", "job_id": "p-{cui}"},
            "source broken: row 299 (cui='RO10000299:x'): job_id 'p-{cui}' gives job id "
            "'p-RO10000299:x' contains ':'",
        ),
        (
            {"sql": "SELECT id, decode('00ff', 'hex') AS b FROM prospects", "data": {"b": "b"}},
            "source broken: row 1 (id=1): column b holds a bytes value, which JSON cannot carry",
        ),
    ],
    ids=["sql-error", "job-id-column", "data-column", "all-digits", "colon-in-last-row", "bytea"],
)  # fmt: skip
def test_a_bad_source_is_named_and_nothing_is_enqueued(
    tmp_path: Path, redis_server: RedisServer, dsn: str, broken: dict[str, Any], expected: str
) -> None:
    env = setup(tmp_path, redis_server, dsn, [source("outreach"), source(name="broken", **broken)])
    result = env.run("--yes", "queues", "reconstruct")
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr
    lines = [x for x in result.stderr.strip().splitlines() if not x.startswith("progress: ")]
    assert len(lines) == 2  # the error and its HINT (without a terminal, progress lines too)
    assert plain_client(redis_server).dbsize() == 0  # not even the good source
    no_secret(result.stdout, result.stderr)


def test_unreachable_postgres_and_a_wrong_password_are_one_line_without_the_password(
    tmp_path: Path, redis_server: RedisServer, dsn: str, pg: PostgresServer
) -> None:
    port = free_port()
    down = setup(tmp_path, redis_server, dsn.replace(f":{pg.port}/", f":{port}/"))
    result = down.run("--yes", "queues", "reconstruct")
    assert result.returncode == 3
    assert f"source enrich: PostgreSQL postgresql://runbook:***@127.0.0.1:{port}/" in result.stderr
    assert "cannot connect" in result.stderr
    no_secret(result.stdout, result.stderr)
    wrong = setup(tmp_path, redis_server, dsn.replace(quote(PASSWORD, safe=""), WRONG_PASSWORD))
    result = wrong.run("--yes", "queues", "reconstruct")
    assert result.returncode == 2
    assert 'authentication failed: password authentication failed for user "runbook"' in (
        result.stderr
    )
    assert len(result.stderr.strip().splitlines()) == 2
    no_secret(result.stdout, result.stderr)
    shown = wrong.run("config", "show")
    assert str(tmp_path / "pg.dsn") in shown.stdout
    no_secret(shown.stdout)
    assert plain_client(redis_server).dbsize() == 0


def test_a_replica_target_is_refused(tmp_path: Path, redis_factory: RedisFactory, dsn: str) -> None:
    primary = redis_factory()
    replica = redis_factory(settings={"replicaof": f"127.0.0.1 {primary.port}"})
    env = setup(tmp_path, replica, dsn)
    result = env.run("--yes", "queues", "reconstruct")
    assert result.returncode == 3
    assert f"the target is a replica of 127.0.0.1:{primary.port} (role:slave)" in result.stderr
    assert plain_client(primary).dbsize() == 0


def test_an_evicting_policy_and_a_paused_v6_queue_are_refused(
    tmp_path: Path, redis_server: RedisServer, dsn: str
) -> None:
    client = plain_client(redis_server)
    client.config_set("maxmemory-policy", "allkeys-lru")
    env = setup(tmp_path, redis_server, dsn)
    result = env.run("--yes", "queues", "reconstruct")
    assert result.returncode == 3
    assert "maxmemory-policy is allkeys-lru" in result.stderr
    assert "--force" in result.stderr
    client.hset("bull:outreach-send:meta", mapping={"paused": "1", "version": "bullmq:6.2.0"})
    result = env.run("--yes", "queues", "reconstruct", "--force")
    assert result.returncode == 3
    assert "queue outreach-send is paused and uses the v6 layout" in result.stderr
    assert client.dbsize() == 1  # only the meta hash this test wrote
    result = env.run("--yes", "queues", "reconstruct", "--force", "--source", "enrich")
    assert result.returncode == 0, result.stderr
    assert "forced despite maxmemory-policy allkeys-lru" in result.stdout
    assert client.llen("bull:enrich-batch:wait") == 225


def test_no_terminal_and_no_yes_is_refused(
    tmp_path: Path, redis_server: RedisServer, dsn: str
) -> None:
    env = setup(tmp_path, redis_server, dsn)
    result = env.run("queues", "reconstruct")
    assert result.returncode == 3
    assert "no terminal to ask" in result.stderr
    assert plain_client(redis_server).dbsize() == 0


def test_out_of_memory_stops_with_figures_and_a_rerun_adds_only_the_rest(
    tmp_path: Path, redis_factory: RedisFactory, dsn: str
) -> None:
    create_example(dsn, ExampleRows(prospects=20_000, outreach=0, other_every=0), replace=True)
    server = redis_factory(settings={"maxmemory": "3mb"})
    env = setup(tmp_path, server, dsn, [source()])
    result = env.run("--yes", "queues", "reconstruct")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "step 1 (source enrich" in result.stderr
    assert "command not allowed when used memory > 'maxmemory'" in result.stderr
    # Free memory first (a bare re-run would hit the same wall), then re-run.
    hint = next(line for line in result.stderr.splitlines() if line.startswith("HINT:"))
    assert hint.startswith("HINT: redis-runbook recover oom"), hint
    assert "redis-runbook queues reconstruct --source enrich" in hint
    failed = [e for e in env.journal() if e["step"] == "source enrich"][-1]
    assert failed["outcome"] == "failed"
    added = failed["figures"]["added"]
    client = plain_client(server)
    assert 0 < added < 20_000
    assert client.llen("bull:enrich-batch:wait") == added
    client.config_set("maxmemory", "256mb")
    rerun = env.run("--yes", "--json", "queues", "reconstruct")
    assert rerun.returncode == 0, rerun.stderr
    figures = json.loads(rerun.stdout)["sources"][0]
    assert (figures["added"], figures["already_present"]) == (20_000 - added, added)
    assert client.llen("bull:enrich-batch:wait") == 20_000


def test_lab_up_with_postgres_is_ready_for_reconstruct(tmp_path: Path) -> None:
    lab_dir = tmp_path / "lab"
    env = {"REDIS_RUNBOOK_RUNBOOK__STATE_DIR": str(tmp_path / "state")}
    try:
        up = run_cli("lab", "up", "--dir", str(lab_dir), "--with-postgres", env=env)
        assert up.returncode == 0, up.stderr
        assert "postgres: pid" in up.stdout
        dsn_file = lab_dir / "postgres.dsn"
        assert stat.S_IMODE(dsn_file.stat().st_mode) == 0o600
        secret = dsn_file.read_text().split(":")[2].split("@")[0]
        assert secret not in up.stdout
        env["REDIS_RUNBOOK_CONFIG"] = str(lab_dir / "redis-runbook.toml")
        dry = run_cli("--dry-run", "queues", "reconstruct", env=env)
        assert dry.returncode == 0, dry.stderr
        assert "source enrich: enqueue 225 rows into enrich-batch" in dry.stdout
        assert "source outreach: enqueue 113 rows into outreach-send" in dry.stdout
        assert secret not in dry.stdout
        again = run_cli("lab", "up", "--dir", str(lab_dir), "--with-postgres", env=env)
        assert again.returncode == 0, again.stderr  # idempotent, same password
    finally:
        down = run_cli("lab", "down", "--dir", str(lab_dir), env=env)
    assert down.returncode == 0, down.stderr
    assert not (lab_dir / "postgres" / "data" / "postmaster.pid").exists()


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"queue": "enrich:batch"}, "BullMQ v5 rejects ':' in queue names; use 'enrich-batch'"),
        ({"job_id": "enrich:{id}"}, "contains ':' (BullMQ v5 rejects it); use '-' instead"),
        ({"job_id": "enrich"}, "has no {column} placeholder"),
        ({"job_id": "e-{id!r}"}, "must be a plain column name"),
        ({"sql": "DELETE FROM prospects"}, "expected one SELECT"),
        ({"sql": "SELECT id FROM t WHERE c LIKE 'a%'"}, "a literal % must be written %%"),
        ({"sql": "SELECT id FROM t WHERE c > %(after)s"}, "unknown parameter %(after)s"),
        ({"opts": {"attempts": 0}}, "greater than or equal to 1"),
        ({"opts": {"retries": 3}}, "Extra inputs are not permitted"),
    ],
)
def test_config_rejects_what_bullmq_or_psycopg_would(
    changes: dict[str, Any], expected: str
) -> None:
    raw = {"reconstruct": {"dsn_env": "DATABASE_URL", "sources": [source(**changes)]}}
    with pytest.raises(ValueError, match=r"reconstruct\.sources") as caught:
        Config.model_validate(raw)
    assert expected in str(caught.value)


def test_config_needs_exactly_one_dsn_source(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="need a PostgreSQL DSN"):
        Config.model_validate({"reconstruct": {"sources": [source()]}})
    with pytest.raises(ValueError, match="choose one DSN source"):
        Config.model_validate({"reconstruct": {"dsn_env": "A", "dsn_command": ["pass", "x"]}})
    config = tmp_path / "bad.toml"
    config.write_text('[reconstruct]\ndsn_env = "A"\n[[reconstruct.sources]]\nname = "x"\n')
    result = run_cli("--config", str(config), "config", "validate")
    assert result.returncode == 2
    assert "reconstruct.sources.0.queue" in result.stderr


def test_parse_since() -> None:
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert parse_since("6h", now) == datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
    assert parse_since("2026-11-26T03:00:00") == datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
    assert parse_since("2026-11-26T05:00:00+02:00") == datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
    assert parse_since(None) is None
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_RUNBOOK_")}
    result = run_cli("queues", "reconstruct", "--since", "yesterday", env=env)
    assert result.returncode == 2
    assert "--since: expected a time, got 'yesterday'" in result.stderr


def test_node_workers_process_reconstructed_jobs(
    tmp_path: Path, redis_server: RedisServer, dsn: str, node: NodeLauncher
) -> None:
    """What we enqueue is what a Node BullMQ v5 producer would: Node workers take
    every job, with the source's name, and complete each exactly once."""
    env = setup(tmp_path, redis_server, dsn)
    result = env.run("--yes", "--json", "queues", "reconstruct", "--source", "enrich")
    assert result.returncode == 0, result.stderr
    selected = json.loads(result.stdout)["sources"][0]["selected"]
    assert selected > 100
    worker = node("worker.js", {"queue": "enrich-batch", "concurrency": 20},
                  redis_url=redis_server.target().url)  # fmt: skip
    done = worker.wait_count(lambda e: e.get("event") == "completed", selected, 60)
    assert {e["name"] for e in done} == {"enrich"}
    assert len({e["jobId"] for e in done}) == selected
    assert [e for e in worker.poll() if e.get("event") in ("failed", "error")] == []
    worker.terminate()


def test_reconstructed_jobs_in_a_paused_queue_survive_a_node_resume(
    tmp_path: Path, redis_server: RedisServer, dsn: str, node: NodeLauncher
) -> None:
    at = redis_server.target().url
    node.run("admin.js", {"action": "pause", "queue": "outreach-send"}, redis_url=at)
    env = setup(tmp_path, redis_server, dsn)
    result = env.run("--yes", "--json", "queues", "reconstruct", "--source", "outreach")
    assert result.returncode == 0, result.stderr
    selected = json.loads(result.stdout)["sources"][0]["selected"]
    client = plain_client(redis_server)
    assert client.llen("bull:outreach-send:paused") == selected
    node.run("admin.js", {"action": "resume", "queue": "outreach-send"}, redis_url=at)
    assert client.llen("bull:outreach-send:wait") == selected
    worker = node("worker.js", {"queue": "outreach-send", "concurrency": 20}, redis_url=at)
    worker.wait_count(lambda e: e.get("event") == "completed", selected, 60)
    worker.terminate()


def test_duplicate_rows_are_warned_with_their_count_and_ids(
    tmp_path: Path, redis_server: RedisServer, dsn: str
) -> None:
    """A query that repeats a job id (a JOIN fanning out) is named before anything
    is enqueued, with the count and the first ids; the figures count those rows as
    duplicates, not as jobs already present."""
    fanned = source(
        sql="SELECT p.id, p.source_type, p.cui FROM prospects p "
        "JOIN generate_series(1, CASE WHEN p.id <= 10 THEN 2 ELSE 1 END) g ON true "
        "WHERE p.enrichment_status = 'pending' ORDER BY p.id, g",
    )
    env = setup(tmp_path, redis_server, dsn, [fanned])
    warning = (
        "WARNING: source enrich: 8 rows repeat the job id of an earlier row (enrich-1, "
        "enrich-2, enrich-3, enrich-5, enrich-6 and 3 more): only the first row of each id "
        "is enqueued"
    )
    dry = env.run("--dry-run", "queues", "reconstruct")
    assert dry.returncode == 0, dry.stderr
    assert warning in " ".join(dry.stdout.split()), dry.stdout
    as_json = json.loads(env.run("--dry-run", "--json", "queues", "reconstruct").stdout)
    assert as_json["scans"][0]["duplicate_rows"] == 8
    assert as_json["scans"][0]["duplicate_ids"] == [
        "enrich-1", "enrich-2", "enrich-3", "enrich-5", "enrich-6"
    ]  # fmt: skip
    result = env.run("--yes", "--json", "queues", "reconstruct")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)["sources"][0]
    assert (figures["selected"], figures["added"], figures["already_present"]) == (233, 225, 0)
    assert figures["duplicate_rows"] == 8
    assert figures["duplicate_ids"][:2] == ["enrich-1", "enrich-2"]
    assert plain_client(redis_server).llen("bull:enrich-batch:wait") == 225
    human = env.run("--yes", "queues", "reconstruct")
    assert human.returncode == 0, human.stderr
    assert "8 duplicate rows" in " ".join((human.stdout + human.stderr).split())


def dedup_source(**opts: Any) -> dict[str, Any]:
    """The enrich source for prospects 1-5 with a deduplication id per prospect, the
    one the Node application uses when it adds the same work."""
    return source(
        sql="SELECT id, source_type, cui FROM prospects WHERE id <= 5 ORDER BY id",
        opts={"attempts": 1, "deduplication": {"id": "prospect:{id}", **opts}},
    )


def test_deduplication_ids_stop_the_application_adding_a_rebuilt_job_again(
    tmp_path: Path, redis_server: RedisServer, dsn: str, node: NodeLauncher
) -> None:
    """A job rebuilt from PostgreSQL carries the application's deduplication id, so
    the Node producer re-adding the same work (its own job id) is deduplicated by
    BullMQ v5 — same `de:` key, same `deduplicated` event — and each job runs once."""
    at = redis_server.target().url
    env = setup(tmp_path, redis_server, dsn, [dedup_source(ttl=600_000)])
    result = env.run("--yes", "--json", "queues", "reconstruct")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)["sources"][0]
    assert (figures["added"], figures["deduplicated"]) == (5, 0)
    client = plain_client(redis_server)
    assert client.get("bull:enrich-batch:de:prospect:1") == "enrich-1"
    assert 0 < client.pttl("bull:enrich-batch:de:prospect:1") <= 600_000
    rebuilt = job(client, "enrich-batch", "enrich-1")
    assert rebuilt["deid"] == "prospect:1"
    assert rebuilt["opts"]["de"] == {"id": "prospect:1", "ttl": 600_000}
    # The application adds prospect 1 again, with its own job id: BullMQ returns ours.
    added = node.run("producer.js", {"queue": "enrich-batch", "count": 1, "start": 1,
                                     "name": "enrich", "jobIdPrefix": "app-", "printIds": True,
                                     "opts": {"deduplication": {"id": "prospect:1"}}},
                     redis_url=at)  # fmt: skip
    assert added[-1]["ids"] == ["enrich-1"]
    assert client.exists("bull:enrich-batch:app-1") == 0
    events = client.xrange("bull:enrich-batch:events")
    deduplicated = [f for _, f in events if f.get("event") == "deduplicated"]
    assert deduplicated == [
        {"event": "deduplicated", "jobId": "enrich-1", "deduplicationId": "prospect:1",
         "deduplicatedJobId": "app-1"}
    ]  # fmt: skip
    worker = node("worker.js", {"queue": "enrich-batch", "concurrency": 5}, redis_url=at)
    done = worker.wait_count(lambda e: e.get("event") == "completed", 5, 60)
    assert sorted(e["jobId"] for e in done) == [f"enrich-{i}" for i in range(1, 6)]
    worker.terminate()
    assert client.zcard("bull:enrich-batch:completed") == 5  # no sixth run


def test_a_job_the_application_already_added_is_counted_as_deduplicated(
    tmp_path: Path, redis_server: RedisServer, dsn: str, node: NodeLauncher
) -> None:
    at = redis_server.target().url
    node.run("producer.js", {"queue": "enrich-batch", "count": 1, "start": 2, "name": "enrich",
                             "jobIdPrefix": "app-",
                             "opts": {"deduplication": {"id": "prospect:2"}}},
             redis_url=at)  # fmt: skip
    env = setup(tmp_path, redis_server, dsn, [dedup_source()])
    result = env.run("--yes", "--json", "queues", "reconstruct")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)["sources"][0]
    assert (figures["added"], figures["deduplicated"], figures["failed"]) == (4, 1, 0)
    client = plain_client(redis_server)
    assert client.exists("bull:enrich-batch:enrich-2") == 0
    assert client.get("bull:enrich-batch:de:prospect:2") == "app-2"
    events: Any = client.xrange("bull:enrich-batch:events")
    assert [f for _, f in events if f.get("event") == "deduplicated"] == [
        {"event": "deduplicated", "jobId": "app-2", "deduplicationId": "prospect:2",
         "deduplicatedJobId": "enrich-2"}
    ]  # fmt: skip
    worker = node("worker.js", {"queue": "enrich-batch", "concurrency": 5}, redis_url=at)
    done = worker.wait_count(lambda e: e.get("event") == "completed", 5, 60)
    assert sorted(e["jobId"] for e in done) == ["app-2", "enrich-1", "enrich-3", "enrich-4",
                                                "enrich-5"]  # fmt: skip
    worker.terminate()
    again = env.run("--yes", "--json", "queues", "reconstruct")
    assert again.returncode == 0, again.stderr
    rerun = json.loads(again.stdout)["sources"][0]
    # The jobs are kept (no removeOnComplete) and the de: keys went with completion.
    assert (rerun["added"], rerun["already_present"]) == (1, 4)


def test_priority_delay_and_lifo_come_from_columns(
    tmp_path: Path, redis_server: RedisServer, dsn: str, node: NodeLauncher
) -> None:
    columns = source(
        sql="SELECT id, source_type, cui, CASE WHEN id = 1 THEN 7 END AS prio, "
        "CASE WHEN id = 2 THEN now() + interval '1 hour' END AS run_at, "
        "CASE WHEN id = 4 THEN 90000 END AS wait_ms, id = 3 AS urgent "
        "FROM prospects WHERE id <= 5 ORDER BY id",
        opts_columns={"priority": "prio", "delay": "run_at", "lifo": "urgent"},
    )
    millis = source(
        name="millis",
        sql="SELECT id, source_type, cui, 90000 AS wait_ms FROM prospects WHERE id = 6",
        opts_columns={"delay": "wait_ms"},
    )
    env = setup(tmp_path, redis_server, dsn, [columns, millis])
    result = env.run("--yes", "queues", "reconstruct")
    assert result.returncode == 0, result.stderr
    client = plain_client(redis_server)
    assert job(client, "enrich-batch", "enrich-1")["opts"]["priority"] == 7
    delay = job(client, "enrich-batch", "enrich-2")["opts"]["delay"]
    assert 3_000_000 < delay <= 3_600_000
    assert job(client, "enrich-batch", "enrich-6")["opts"]["delay"] == 90_000
    assert client.lindex("bull:enrich-batch:wait", -1) == "enrich-3"  # LIFO: next to run
    assert job(client, "enrich-batch", "enrich-5")["opts"]["lifo"] is False  # as the row says
    ids = [f"enrich-{i}" for i in range(1, 7)]
    states = node.run("admin.js", {"action": "states", "queue": "enrich-batch", "ids": ids},
                      redis_url=redis_server.target().url)[-1]["states"]  # fmt: skip
    assert states == {
        "enrich-1": "prioritized", "enrich-2": "delayed", "enrich-3": "waiting",
        "enrich-4": "waiting", "enrich-5": "waiting", "enrich-6": "delayed",
    }  # fmt: skip


def test_option_columns_are_checked_before_anything_is_enqueued(
    tmp_path: Path, redis_server: RedisServer, dsn: str
) -> None:
    bad = source(
        sql="SELECT id, source_type, cui, 'high' AS prio FROM prospects ORDER BY id",
        opts_columns={"priority": "prio"},
    )
    env = setup(tmp_path, redis_server, dsn, [bad])
    result = env.run("--yes", "queues", "reconstruct")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "source enrich: row 1 (id=1): priority column prio: expected an integer" in (
        result.stderr
    )
    assert plain_client(redis_server).dbsize() == 0
    with pytest.raises(ValueError, match=r"no \{column\} placeholder"):
        Config.model_validate(
            {"reconstruct": {"dsn_env": "D", "sources": [dedup_source(id="same-for-all")]}}
        )
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        Config.model_validate(
            {"reconstruct": {"dsn_env": "D", "sources": [dedup_source(replace=True)]}}
        )
