"""deploy/ and the packaged Grafana dashboard, each checked by the real program that will
consume it: promtool parses every dashboard query, redis-server takes the compose file's
flags, systemd-analyze verifies the units, the config loader reads the example config.
The files are read with plain line parsing: no YAML dependency."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from redis_runbook.cli.commands import COMMANDS
from redis_runbook.config import ServerExpectations, TargetConfig, Thresholds, load_config
from redis_runbook.ports import free_port
from redis_runbook.readiness import wait_ready
from redis_runbook.units import parse_size
from tests.support.cli import run_cli
from tests.support.paths import ROOT
from tests.support.promtool import check_rules, run_promtool

PACKAGE = ROOT / "src" / "redis_runbook"
DASHBOARD = PACKAGE / "monitoring" / "grafana" / "redis-runbook.json"
MONITORING_DOC = ROOT / "docs" / "monitoring.md"
DEPLOY = ROOT / "deploy"
DASHBOARD_LINK = DEPLOY / "grafana" / "redis-runbook.json"
COMPOSE = DEPLOY / "docker-compose.yml"
EXAMPLE_CONFIG = DEPLOY / "redis-runbook.toml.example"
SYSTEMD = DEPLOY / "systemd"
CRON = DEPLOY / "cron" / "redis-runbook"

SYSTEMD_ANALYZE = "/usr/bin/systemd-analyze"
# Where the units expect the tool (a venv in /opt/redis-runbook, deploy/README.md).
INSTALLED_BINARY = "/opt/redis-runbook/bin/redis-runbook"
STATE_DIR = "/var/lib/redis-runbook"
SERVICE_USER = "redis-runbook"
# Commands another change adds: a missing one fails on its name first (COMMANDS).
CONCURRENT_COMMANDS = {"monitor", "checklist", "exporter"}

# Concrete values for Grafana's variables, so that promtool sees plain PromQL.
GRAFANA_VARIABLES = {
    "instance": "redis-runbook-exporter:9121",
    "queue": "enrich-batch",
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "1h",
}


def word_set(text: str) -> set[str]:
    return set(text.split())


# Words of PromQL that look like metric names: keywords and set operators.
PROMQL_WORDS = word_set(
    "and or unless by without on ignoring group_left group_right bool offset inf nan atan2"
)
# Every metric the brief's panels are about.
REQUIRED_METRICS = word_set(
    """
    redis_up redis_memory_used_bytes redis_memory_max_bytes redis_mem_fragmentation_ratio
    redis_connected_clients redis_blocked_clients redis_rejected_connections_total
    redis_evicted_keys_total redis_errors_total redis_rdb_last_bgsave_status
    redis_aof_last_write_status redis_rdb_last_save_timestamp_seconds
    redis_aof_current_size_bytes redis_db_keys redis_slowlog_length
    bullmq_queue_jobs bullmq_queue_stale_active_jobs bullmq_queue_workers
    redis_runbook_backup_last_timestamp_seconds redis_runbook_check_status
    redis_exporter_last_scrape_duration_seconds
    """
)


# --- the dashboard ------------------------------------------------------------------------


def load_dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    found: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def panel_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(`panel <id> <refId>`, expr) for every query target of every panel."""
    return [
        (f"panel {panel['id']} {target['refId']}", target["expr"])
        for panel in all_panels(dashboard)
        for target in panel.get("targets", [])
    ]


def variable_queries(dashboard: dict[str, Any]) -> dict[str, str]:
    """Template variable name -> its query (datasource variables: the plugin id)."""
    queries: dict[str, str] = {}
    for variable in dashboard["templating"]["list"]:
        query = variable["query"]
        queries[variable["name"]] = query["query"] if isinstance(query, dict) else query
    return queries


def substitute_variables(expr: str) -> str:
    """`$name` / `${name}` / `${name:format}` replaced by GRAFANA_VARIABLES values."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in GRAFANA_VARIABLES, f"unknown Grafana variable ${name} in {expr!r}"
        return GRAFANA_VARIABLES[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, expr)


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: identifiers that are not strings, label
    names, durations, functions, aggregations or keywords."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery durations
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names: set[str] = set()
    for match in re.finditer(r"(?<![\w.:])[A-Za-z_:][\w:]*", text):
        word = match.group()
        if text[match.end() :].lstrip().startswith("(") or word.lower() in PROMQL_WORDS:
            continue  # a function or aggregation call, or a keyword
        names.add(word)
    return names


def documented_metrics() -> set[str]:
    """The backticked names in the first column of docs/monitoring.md's metric tables."""
    names: set[str] = set()
    in_table = False
    for line in MONITORING_DOC.read_text(encoding="utf-8").splitlines():
        if re.match(r"\|\s*metric\s*\|", line):
            in_table = True
            continue
        if not line.startswith("|"):
            in_table = False
        elif in_table and not re.match(r"\|\s*-", line):
            first_cell = line.split("|")[1]
            names.update(re.findall(r"`([A-Za-z_:][\w:]*)`", first_cell))
    return names


def test_dashboard_loads_with_its_inputs_and_variables() -> None:
    dashboard = load_dashboard()
    assert dashboard["schemaVersion"] == 39
    inputs = {i["name"]: i for i in dashboard["__inputs"]}
    assert inputs["DS_PROMETHEUS"]["type"] == "datasource"
    assert inputs["DS_PROMETHEUS"]["pluginId"] == "prometheus"
    queries = variable_queries(dashboard)
    assert queries["DS_PROMETHEUS"] == "prometheus"  # provisioning has no import step
    assert queries["instance"] == "label_values(redis_up, instance)"
    assert queries["queue"] == "label_values(bullmq_queue_jobs, queue)"

    panels = all_panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {ids}"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for source in [panel["datasource"], *(t["datasource"] for t in panel["targets"])]:
            assert source == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel["title"]


def test_dashboard_covers_the_panels_and_thresholds_of_the_runbook() -> None:
    dashboard = load_dashboard()
    exprs = [expr for _, expr in panel_exprs(dashboard)]
    used = set().union(*(metric_names(expr) for expr in exprs))
    assert used >= REQUIRED_METRICS, f"no panel for {sorted(REQUIRED_METRICS - used)}"
    assert any('err="OOM"' in e and "redis_errors_total" in e for e in exprs)
    assert any('ALERTS{alertstate="firing"' in e for e in exprs)
    assert any("time() - redis_runbook_backup_last_timestamp_seconds" in e for e in exprs)

    # The memory % panels colour at the same bands as `health` (seed §6.1: 70 / 85).
    band = Thresholds().memory_pct
    percent_panels = [
        p
        for p in all_panels(dashboard)
        if p.get("fieldConfig", {}).get("defaults", {}).get("unit") == "percent"
        and any("redis_memory_max_bytes" in t["expr"] for t in p["targets"])
    ]
    assert percent_panels
    for panel in percent_panels:
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert [s["value"] for s in steps] == [None, band.warning, band.critical], panel["title"]

    # Jobs by state: one stacked panel per selected queue.
    jobs = [
        p
        for p in all_panels(dashboard)
        if any("bullmq_queue_jobs" in t["expr"] for t in p.get("targets", []))
    ]
    assert [p["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] for p in jobs] == ["normal"]
    assert jobs[0]["repeat"] == "queue"


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """Each expr becomes a recording rule; the real promtool parses the file."""
    rules = [
        {"record": f"redis_runbook_dashboard:{where.replace(' ', '_')}", "expr": expr}
        for where, expr in (
            (where, substitute_variables(expr)) for where, expr in panel_exprs(load_dashboard())
        )
    ]
    assert len(rules) >= 20
    for rule in rules:
        assert "$" not in rule["expr"], rule
    rules_file = tmp_path / "dashboard-rules.yml"
    # JSON is YAML: no YAML library needed to write a rules file.
    rules_file.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert f"SUCCESS: {len(rules)} rules found" in check_rules(rules_file)


def test_promtool_rejects_what_the_seed_got_wrong(tmp_path: Path) -> None:
    """The check has teeth: the seed's string comparison is refused by promtool."""
    bad = 'redis_config_maxmemory_policy == "noeviction"'
    rules_file = tmp_path / "bad.yml"
    rules_file.write_text(
        json.dumps({"groups": [{"name": "bad", "rules": [{"record": "x:y", "expr": bad}]}]})
    )
    assert run_promtool("check", "rules", rules_file).returncode != 0


def test_dashboard_uses_only_documented_metric_names() -> None:
    dashboard = load_dashboard()
    documented = documented_metrics()
    assert {"redis_up", "bullmq_queue_jobs", "redis_runbook_check_status"} <= documented
    used: dict[str, set[str]] = {}
    sources = [*panel_exprs(dashboard)]
    for name, query in variable_queries(dashboard).items():
        match = re.match(r"label_values\(\s*([^,)]+?)\s*,", query)
        if match:
            sources.append((f"variable {name}", match.group(1)))
    for where, expr in sources:
        for metric in metric_names(expr) - {"ALERTS"}:
            used.setdefault(metric, set()).add(where)
    undocumented = {m: sorted(w) for m, w in used.items() if m not in documented}
    assert not undocumented, f"not in docs/monitoring.md: {undocumented}"


def test_metric_name_extraction() -> None:
    expr = (
        'sum by (queue, state) (rate(bullmq_queue_jobs{queue=~"a|b"}[5m] offset 1h)) '
        "/ on(instance) group_left(role) redis_instance_info > bool 1e3 "
        "or time() - redis_runbook_backup_last_timestamp_seconds"
    )
    assert metric_names(expr) == {
        "bullmq_queue_jobs",
        "redis_instance_info",
        "redis_runbook_backup_last_timestamp_seconds",
    }


def test_deploy_dashboard_is_a_relative_link_to_the_packaged_one() -> None:
    assert DASHBOARD_LINK.is_symlink()
    target = os.readlink(DASHBOARD_LINK)
    assert not os.path.isabs(target), target
    assert DASHBOARD_LINK.resolve() == DASHBOARD.resolve()

    with (ROOT / "pyproject.toml").open("rb") as handle:
        patterns = tomllib.load(handle)["tool"]["setuptools"]["package-data"]["redis_runbook"]
    packaged = {path for pattern in patterns for path in PACKAGE.glob(pattern)}
    assert DASHBOARD in packaged, f"package-data {patterns} does not ship {DASHBOARD}"


# --- docker-compose.yml -------------------------------------------------------------------


def compose_lines() -> list[str]:
    return COMPOSE.read_text(encoding="utf-8").splitlines()


def indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def significant(line: str) -> bool:
    return bool(line.strip()) and not line.lstrip().startswith("#")


def block(lines: list[str], key: str, at: int) -> list[str]:
    """The lines under `key:` found at indentation `at` (the first such key)."""
    for n, line in enumerate(lines):
        if indent(line) == at and line.strip().startswith(f"{key}:"):
            body: list[str] = []
            for following in lines[n + 1 :]:
                if significant(following) and indent(following) <= at:
                    break
                body.append(following)
            return [line, *body]
    raise AssertionError(f"no {key!r} at indentation {at} in {COMPOSE}")


def service(name: str) -> list[str]:
    return block(block(compose_lines(), "services", 0), name, 2)


def scalar(item: str) -> str:
    """A YAML scalar as written in this file: double-quoted (JSON rules), single-quoted
    or plain."""
    item = item.strip()
    if item.startswith('"'):
        value = json.loads(item)
        assert isinstance(value, str)
        return value
    if item.startswith("'"):
        return item[1:-1].replace("''", "'")
    return item


def sequence(lines: list[str], key: str) -> list[str]:
    """The items of `key:` in a service: a flow list of double-quoted strings on the key's
    line (valid JSON), or a block list below it."""
    owner = indent(lines[0])
    head = next(
        (
            line
            for line in lines
            if indent(line) == owner + 2 and line.strip().startswith(f"{key}:")
        ),
        None,
    )
    if head is None:
        return []
    rest = head.split(":", 1)[1].strip()
    if rest:
        items = json.loads(rest)
        assert isinstance(items, list)
        return [str(item) for item in items]
    return [
        scalar(line.strip()[2:])
        for line in block(lines, key, owner + 2)[1:]
        if significant(line) and line.strip().startswith("- ")
    ]


def flag_values(argv: list[str]) -> dict[str, str]:
    """`--name value` pairs of a redis-server command line."""
    assert len(argv) % 2 == 0, argv
    pairs = dict(zip(argv[::2], argv[1::2], strict=True))
    assert all(flag.startswith("--") for flag in pairs), argv
    return {flag[2:]: value for flag, value in pairs.items()}


@contextlib.contextmanager
def compose_redis_server(tmp_path: Path) -> Iterator[tuple[redis.Redis, dict[str, str]]]:
    """redis-server started with the compose file's flags, then local overrides (last, so
    they win): a free loopback port, a temp dir, a small maxmemory."""
    command = sequence(service("redis"), "command")
    assert command[0] == "redis-server", command
    flags = command[1:]
    port = free_port()
    overrides = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path)]
    overrides += ["--maxmemory", "64mb", "--daemonize", "no"]
    log = (tmp_path / "redis.log").open("wb")
    process = subprocess.Popen(
        ["redis-server", *flags, *overrides], stdout=log, stderr=subprocess.STDOUT
    )
    try:

        def gone() -> str | None:
            if process.poll() is None:
                return None
            return (tmp_path / "redis.log").read_text(errors="replace")[-2000:]

        wait_ready(TargetConfig(url=f"redis://127.0.0.1:{port}/0"), 15.0, gone=gone)
        client = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
        try:
            yield client, flag_values(flags)
        finally:
            client.close()
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
        log.close()


def test_compose_redis_flags_are_accepted_by_redis_server(tmp_path: Path) -> None:
    with compose_redis_server(tmp_path) as (client, flags):
        for name in ("appendonly", "appendfsync", "maxmemory-policy"):
            assert client.config_get(name) == {name: flags[name]}
        assert client.config_get("maxmemory") == {"maxmemory": str(64 * 1024 * 1024)}

    # The compose file is the deployment the tool's defaults describe.
    expected = ServerExpectations()
    assert flags["appendonly"] == ("yes" if expected.appendonly else "no")
    assert flags["appendfsync"] == expected.appendfsync
    assert flags["maxmemory-policy"] == "noeviction"  # BullMQ needs it
    assert parse_size(flags["maxmemory"]) == expected.maxmemory_bytes


def test_compose_layout_mirrors_the_seed() -> None:
    redis_service = service("redis")
    text = "\n".join(redis_service)
    assert re.search(r"^\s+image: redis:8\.4\s*$", text, re.MULTILINE)
    assert sequence(redis_service, "volumes") == ["/data/redis-data:/data"]
    assert re.search(r"^\s+memory: \S+", text, re.MULTILINE), "no memory limit"
    assert "redis-cli ping" in text
    for name in ("redis-runbook-exporter", "redis-runbook-monitor"):
        lines = service(name)
        assert "dockerfile: deploy/Dockerfile" in "\n".join(lines)
        assert re.search(r"^\s+restart: unless-stopped\s*$", "\n".join(lines), re.MULTILINE)
        mounts = sequence(lines, "volumes")
        assert "./redis-runbook.toml:/etc/redis-runbook/redis-runbook.toml:ro" in mounts
    assert sequence(service("redis-runbook-exporter"), "command") == [
        "exporter",
        "--listen",
        "0.0.0.0:9121",
        "--listen-public",
    ]
    assert sequence(service("redis-runbook-monitor"), "command") == ["monitor"]


def test_compose_publishes_on_loopback_only_and_keeps_secrets_out_of_env() -> None:
    published: list[str] = []
    for name in ("redis", "redis-runbook-exporter", "redis-runbook-monitor"):
        lines = service(name)
        published += sequence(lines, "ports")
        environment = (
            block(lines, "environment", 4)[1:]
            if any(line.strip() == "environment:" for line in lines)
            else []
        )
        for line in filter(significant, environment):
            variable = line.strip().removeprefix("- ").split(":", 1)[0].split("=", 1)[0]
            assert not re.search(r"PASS|SECRET|TOKEN|WEBHOOK|DSN|KEY", variable), line
    assert published == ["127.0.0.1:6379:6379", "127.0.0.1:9121:9121"]


# --- systemd units ------------------------------------------------------------------------


def unit_settings(path: Path) -> dict[str, list[str]]:
    """`Key=value` lines of a unit file, every value of a repeated key kept."""
    settings: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


UNIT_FILES = (
    "redis-runbook-monitor.service",
    "redis-runbook-exporter.service",
    "redis-runbook-checklist-daily.service",
    "redis-runbook-checklist-daily.timer",
)


def test_systemd_units_are_hardened_services_of_their_own_user() -> None:
    for name in UNIT_FILES:
        settings = unit_settings(SYSTEMD / name)
        if name.endswith(".timer"):
            assert settings["Unit"] == ["redis-runbook-checklist-daily.service"]
            assert settings["OnCalendar"]
            continue
        expected_type = "oneshot" if "checklist" in name else "simple"
        assert settings["Type"] == [expected_type], name
        assert settings["User"] == [SERVICE_USER], name
        for key, value in (
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("PrivateTmp", "yes"),
            ("StateDirectory", "redis-runbook"),
        ):
            assert settings.get(key) == [value], f"{name}: {key}"
        assert f"REDIS_RUNBOOK_RUNBOOK__STATE_DIR={STATE_DIR}" in settings["Environment"]
        assert "/var/lib/" + settings["StateDirectory"][0] == STATE_DIR
        assert settings["ExecStart"][0].split()[0] == INSTALLED_BINARY
        if expected_type == "simple":
            assert settings["Restart"] == ["on-failure"], name
            assert settings["RestartSec"], name


def run_verify(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SYSTEMD_ANALYZE, "verify", *(f"./{name}" for name in UNIT_FILES)],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": ""},
    )


def complaints(result: subprocess.CompletedProcess[str], directory: Path) -> list[str]:
    """Output lines about our units (systemd-analyze may also talk about others)."""
    names = [name.rsplit(".", 1)[0] for name in UNIT_FILES]
    return [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if str(directory) in line or any(name in line for name in names)
    ]


def test_systemd_units_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` exits 0 on unknown keys and bad values (it only warns),
    so any line about our units fails the test. The tool is not installed on this
    machine: the only complaint allowed on the originals is its missing binary, and
    copies pointing at a stand-in executable must verify without a word."""
    as_shipped = tmp_path / "as-shipped"
    as_shipped.mkdir()
    for name in UNIT_FILES:
        shutil.copy(SYSTEMD / name, as_shipped / name)
    missing = f"Command {INSTALLED_BINARY} is not executable: No such file or directory"
    for line in complaints(run_verify(as_shipped), as_shipped):
        assert line.endswith(missing), line

    stand_in = tmp_path / "bin" / "redis-runbook"
    stand_in.parent.mkdir()
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    rewritten = tmp_path / "rewritten"
    rewritten.mkdir()
    for name in UNIT_FILES:
        text = (SYSTEMD / name).read_text(encoding="utf-8")
        (rewritten / name).write_text(text.replace(INSTALLED_BINARY, str(stand_in)))
    result = run_verify(rewritten)
    assert result.returncode == 0, result.stdout + result.stderr
    assert complaints(result, rewritten) == []


def test_systemd_verify_catches_a_typo(tmp_path: Path) -> None:
    """The check has teeth: a misspelt hardening key is reported."""
    text = (SYSTEMD / "redis-runbook-monitor.service").read_text(encoding="utf-8")
    assert "PrivateTmp=yes" in text
    for name in UNIT_FILES:
        shutil.copy(SYSTEMD / name, tmp_path / name)
    (tmp_path / "redis-runbook-monitor.service").write_text(
        text.replace("PrivateTmp=yes", "PrivateTemp=yes")
    )
    lines = complaints(run_verify(tmp_path), tmp_path)
    assert any("PrivateTemp" in line for line in lines), lines


# --- the cron file ------------------------------------------------------------------------

CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
CRON_ITEM = re.compile(r"(\*|(\d+)(?:-(\d+))?)(?:/(\d+))?")


def valid_cron_field(field: str, low: int, high: int) -> bool:
    for item in field.split(","):
        match = CRON_ITEM.fullmatch(item)
        if not match:
            return False
        numbers = [int(n) for n in match.group(2, 3) if n is not None]
        if any(not low <= n <= high for n in numbers) or match.group(4) == "0":
            return False
    return True


def cron_entries() -> list[tuple[list[str], str, list[str]]]:
    """(time fields, user, command argv) of every job line; environment lines skipped."""
    entries: list[tuple[list[str], str, list[str]]] = []
    for line in CRON.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if re.match(r"[A-Za-z_][A-Za-z0-9_]*=", line):
            continue
        fields = line.split(None, 6)
        assert len(fields) == 7, f"expected 5 time fields, a user and a command: {line!r}"
        assert "%" not in fields[6], f"cron turns % into a newline: {line!r}"
        entries.append((fields[:5], fields[5], shlex.split(fields[6])))
    return entries


def runbook_args(argv: list[str]) -> list[str]:
    """The arguments after `redis-runbook` in a command line, shell redirections left out."""
    start = next(n for n, word in enumerate(argv) if Path(word).name == "redis-runbook")
    return [word for word in argv[start + 1 :] if not word.startswith((">", "<", "2>"))]


def runbook_words(argv: list[str]) -> list[str]:
    """The command words after `redis-runbook` (global options skipped), e.g.
    ['checklist', 'daily']."""
    words: list[str] = []
    rest = iter(runbook_args(argv))
    for word in rest:
        if word in ("--config", "-c"):
            next(rest)
        elif word.startswith("-"):
            if words:
                break
        else:
            words.append(word)
    return words


def assert_command_runs(args: list[str]) -> None:
    """`redis-runbook ARGS --help` exits 0: the command exists and takes every option
    given (click rejects an unknown option or subcommand before it shows the help)."""
    if args[0] in CONCURRENT_COMMANDS:
        assert args[0] in COMMANDS, f"`redis-runbook {args[0]}` is not registered yet"
    result = run_cli(*args, "--help")
    assert result.returncode == 0, f"redis-runbook {shlex.join(args)}: {result.stderr}"


def test_cron_file_lines_are_complete_and_safe() -> None:
    text = CRON.read_text(encoding="utf-8")
    assert text.endswith("\n"), "cron ignores a last line without a newline"
    assert re.fullmatch(r"[A-Za-z0-9_-]+", CRON.name), "run-parts skips names with dots"
    assert re.search(r"^PATH=", text, re.MULTILINE)
    entries = cron_entries()
    assert entries
    for times, user, argv in entries:
        for field, (low, high) in zip(times, CRON_RANGES, strict=True):
            assert valid_cron_field(field, low, high), f"bad time field {field!r} in {times}"
        assert user == SERVICE_USER
        assert argv[:2] == ["flock", "-n"], f"no flock -n: {argv}"
    monitor = [(t, argv) for t, _, argv in entries if runbook_words(argv) == ["monitor"]]
    assert [t for t, _ in monitor] == [["*/5", "*", "*", "*", "*"]]  # the seed's §6.2 line
    assert "--once" in monitor[0][1]
    checklists = {tuple(runbook_words(argv)) for _, _, argv in entries}
    for period in ("daily", "weekly", "monthly"):
        assert ("checklist", period) in checklists


def test_cron_commands_exist() -> None:
    """Each cron command is one the CLI has, with the options it is given (`monitor` and
    `checklist` come from another change: checked by name in COMMANDS first)."""
    for _, _, argv in cron_entries():
        assert_command_runs(runbook_args(argv))


def test_unit_and_compose_commands_exist() -> None:
    """The commands systemd and compose start (`exporter`, `monitor`, `checklist daily`),
    with their options."""
    commands = [
        shlex.split(unit_settings(SYSTEMD / name)["ExecStart"][0])[1:]
        for name in UNIT_FILES
        if name.endswith(".service")
    ]
    commands += [
        sequence(service(name), "command")
        for name in ("redis-runbook-exporter", "redis-runbook-monitor")
    ]
    assert sorted(argv[0] for argv in commands) == [
        "checklist",
        "exporter",
        "exporter",
        "monitor",
        "monitor",
    ]
    for argv in commands:
        assert_command_runs(argv)


# --- the example configuration ------------------------------------------------------------


def strings_in(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


def test_example_config_validates(tmp_path: Path) -> None:
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    raw = tomllib.loads(text)
    secrets = sorted(
        {name for s in strings_in(raw) for name in re.findall(r"/run/secrets/([\w.-]+)", s)}
    )
    assert {"smtp_password", "slack_webhook_url", "borg_passphrase"} <= set(secrets)

    # Every secret the config reads is one docker-compose.yml provides.
    declared = {
        line.strip().rstrip(":")
        for line in block(compose_lines(), "secrets", 0)[1:]
        if significant(line) and indent(line) == 2
    }
    assert set(secrets) <= declared, f"not in compose secrets: {set(secrets) - declared}"

    secret_dir = tmp_path / "secrets"
    secret_dir.mkdir()
    for name in secrets:
        (secret_dir / name).write_text("not-a-real-secret\n")
        (secret_dir / name).chmod(0o600)
    copy = tmp_path / "redis-runbook.toml"
    copy.write_text(text.replace("/run/secrets/", f"{secret_dir}/"))

    config = load_config(copy, env={}).config
    assert config.target.url == "redis://redis:6379/0"
    assert config.service.kind == "compose"
    assert config.service.data_dir == Path("/data/redis-data")
    assert config.alerts.smtp is not None
    assert config.alerts.smtp.password_file == secret_dir / "smtp_password"
    assert [w.url_file for w in config.alerts.webhooks] == [secret_dir / "slack_webhook_url"]
    assert config.backup.kind == "borg"
    assert config.backup.passphrase_file == secret_dir / "borg_passphrase"
    exporter_argv = sequence(service("redis-runbook-exporter"), "command")
    assert config.exporter.listen == exporter_argv[exporter_argv.index("--listen") + 1]
