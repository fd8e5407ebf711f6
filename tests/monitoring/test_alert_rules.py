"""`alerts rules`: the Prometheus rules file, checked and unit-tested with the real
`promtool` (Debian `prometheus`), thresholds from the config, and the CLI's
atomic, refuse-to-clobber file writing."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from redis_runbook.config import Config
from redis_runbook.monitoring.rules import (
    HEADER,
    AlertRule,
    RuleGroup,
    build_rules,
    render_rules_yaml,
)
from tests.support.cli import run_cli
from tests.support.paths import ROOT
from tests.support.promtool import check_rules, run_promtool

DEPLOYED = ROOT / "deploy" / "prometheus" / "redis-runbook-rules.yml"
DOCS = ROOT / "docs" / "monitoring.md"
REDIS = {"instance": "cache-1:9121", "job": "redis"}
OTHER = {"instance": "cache-2:9121", "job": "redis"}
THIRD = {"instance": "cache-3:9121", "job": "redis"}


def config_set(**settings: Any) -> Config:
    """The default config with `section__key=value` settings, validated like a file."""
    raw = Config().model_dump()
    for dotted, value in settings.items():
        *path, last = dotted.split("__")
        node = raw
        for part in path:
            node = node[part]
        node[last] = value
    return Config.model_validate(raw)


def rule(groups: list[RuleGroup], name: str) -> AlertRule:
    """The rule named `name` in `groups`."""
    return next(r for g in groups for r in g.rules if r.alert == name)


def series(metric: str, labels: dict[str, str], values: str) -> dict[str, str]:
    """One promtool input series: `metric{labels}` with expanding values notation."""
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{metric}{{{inner}}}", "values": values}


def fires(
    groups: list[RuleGroup], name: str, labels: dict[str, str], value: float, **exact: str
) -> dict[str, Any]:
    """One expected firing alert of rule `name`: its exact labels and annotations,
    templates filled in with `labels` and `value` the way Prometheus fills them.
    `exact` gives annotations as literal text (e.g. summary="Redis is down on ...")."""
    r = rule(groups, name)

    def filled(text: str) -> str:
        text = text.replace('{{ printf "%.1f" $value }}', f"{value:.1f}")
        text = text.replace("{{ $value }}", f"{value:g}")
        for key, label in labels.items():
            text = text.replace(f"{{{{ $labels.{key} }}}}", label)
        assert "{{" not in text, text
        return text

    annotations = {
        "summary": filled(r.summary),
        "description": filled(r.description),
        "runbook": filled(r.runbook),
    }
    assert set(exact) <= set(annotations)
    return {
        "exp_labels": {**labels, "severity": r.severity},
        "exp_annotations": annotations | exact,
    }


def check(eval_time: str, alertname: str, *alerts: dict[str, Any]) -> dict[str, Any]:
    """An alert_rule_test: exactly `alerts` are firing for `alertname` at `eval_time`."""
    return {"eval_time": eval_time, "alertname": alertname, "exp_alerts": list(alerts)}


def promtool_test(
    tmp_path: Path,
    groups: list[RuleGroup],
    inputs: list[dict[str, str]],
    checks: list[dict[str, Any]],
) -> subprocess.CompletedProcess[str]:
    """Run `promtool test rules` on the rendered `groups`. The test file is JSON,
    which is YAML too."""
    rules = tmp_path / "rules.yml"
    rules.write_text(render_rules_yaml(groups))
    tests = tmp_path / "tests.yml"
    document = {
        "rule_files": [rules.name],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": inputs, "alert_rule_test": checks}],
    }
    tests.write_text(json.dumps(document, indent=1))
    return run_promtool("test", "rules", tests)


def assert_passes(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout, result.stdout


# --- the rules themselves ---------------------------------------------------------


def documented_alerts() -> dict[str, tuple[str, str]]:
    """alert -> (for, severity) from the table in docs/monitoring.md."""
    section = DOCS.read_text().split("## `redis-runbook alerts rules`", 1)[1]
    table: dict[str, tuple[str, str]] = {}
    for line in section.splitlines():
        match = re.match(r"\| `(\w+)`", line)
        if match:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            table[match.group(1)] = (cells[-2], cells[-1])
    return table


def test_rules_match_the_documented_table() -> None:
    groups = build_rules(Config(), replication=True, sentinel=True)
    built = {r.alert: (r.for_, r.severity) for g in groups for r in g.rules}
    documented = documented_alerts()
    assert len(documented) == 26
    assert built == documented
    assert [g.name for g in groups] == [
        "redis",
        "bullmq",
        "redis-backup",
        "redis-replication",
        "redis-sentinel",
    ]
    assert [g.name for g in build_rules(Config())] == ["redis", "bullmq", "redis-backup"]
    for r in (r for g in groups for r in g.rules):
        assert r.runbook.startswith("redis-runbook "), r
        assert r.summary, r
        assert r.description, r


@pytest.mark.parametrize(
    ("setting", "value", "alert", "text"),
    [
        ("thresholds__memory_pct__critical", 77, "RedisHighMemory", "> 77 and"),
        ("thresholds__memory_pct__warning", 61, "RedisMemoryWarning", "> 61 and"),
        ("thresholds__connected_clients__critical", 333, "RedisTooManyClients", "> 333"),
        ("thresholds__fragmentation_ratio__warning", 1.75, "RedisFragmentation", "ratio > 1.75"),
        ("thresholds__fragmentation_min_bytes", 4242, "RedisFragmentation", "bytes > 4242"),
        ("thresholds__queue_waiting_jobs__warning", 1234, "BullMQQueueBacklog", "> 1234"),
        ("thresholds__queue_failed_per_min__warning", 7, "BullMQFailedJobsGrowing", "/ 10 > 7"),
        ("thresholds__queue_stale_jobs__warning", 3, "BullMQStaleActiveJobs", "> 3"),
        ("backup__rpo_hours", 49.5, "RedisBackupTooOld", "> 49.5"),
    ],
)
def test_thresholds_come_from_the_config(setting: str, value: float, alert: str, text: str) -> None:
    assert text in rule(build_rules(config_set(**{setting: value})), alert).expr
    assert text not in rule(build_rules(Config()), alert).expr


def test_render_is_block_yaml_with_the_header() -> None:
    text = render_rules_yaml(build_rules(Config()))
    assert text.startswith(HEADER + " (redis-runbook ")
    assert "regenerate" in text.splitlines()[1] + text.splitlines()[2]
    assert '\ngroups:\n  - name: "redis"\n    rules:\n      - alert: "RedisDown"\n' in text
    # A 0m rule has no `for:`; the others have theirs.
    assert '      - alert: "RedisEvictingKeys"\n        expr: ' in text
    assert '        for: "1m"\n' in text
    assert "\t" not in text
    assert text.endswith("\n")


def test_deployed_rules_file_is_current() -> None:
    assert DEPLOYED.read_text() == render_rules_yaml(build_rules(Config())), (
        "regenerate: redis-runbook alerts rules -o deploy/prometheus/redis-runbook-rules.yml"
    )


# --- promtool check rules / test rules ----------------------------------------------


def test_promtool_check_rules(tmp_path: Path) -> None:
    default = tmp_path / "default.yml"
    default.write_text(render_rules_yaml(build_rules(Config())))
    assert "SUCCESS: 18 rules found" in check_rules(default)
    replication = tmp_path / "replication.yml"
    replication.write_text(render_rules_yaml(build_rules(Config(), replication=True)))
    assert "SUCCESS: 20 rules found" in check_rules(replication)
    assert "SUCCESS: 18 rules found" in check_rules(DEPLOYED)


def test_promtool_catches_a_wrong_expectation(tmp_path: Path) -> None:
    """The harness can fail: RedisDown expected after 0s is reported as wrong."""
    groups = build_rules(Config())
    result = promtool_test(
        tmp_path,
        groups,
        [series("redis_up", REDIS, "0x5")],
        [check("0m", "RedisDown", fires(groups, "RedisDown", REDIS, 0))],
    )
    assert result.returncode != 0
    assert "RedisDown" in result.stdout + result.stderr


def test_redis_down_after_one_minute(tmp_path: Path) -> None:
    groups = build_rules(Config())
    down = fires(
        groups,
        "RedisDown",
        REDIS,
        0,
        summary="Redis is down on cache-1:9121",
        runbook="redis-runbook diagnose",
    )
    assert down["exp_labels"]["severity"] == "critical"
    result = promtool_test(
        tmp_path,
        groups,
        [series("redis_up", REDIS, "0x5"), series("redis_up", OTHER, "1x5")],
        [
            check("0m", "RedisDown"),
            check("59s", "RedisDown"),
            check("1m", "RedisDown", down),
            check("5m", "RedisDown", down),
        ],
    )
    assert_passes(result)


def memory_series() -> list[dict[str, str]]:
    """cache-1 at 90 %, cache-2 at 80 % of maxmemory; cache-3 has no maxmemory."""
    return [
        series("redis_memory_used_bytes", REDIS, "900x20"),
        series("redis_memory_max_bytes", REDIS, "1000x20"),
        series("redis_memory_used_bytes", OTHER, "800x20"),
        series("redis_memory_max_bytes", OTHER, "1000x20"),
        series("redis_memory_used_bytes", THIRD, "900x20"),
        series("redis_memory_max_bytes", THIRD, "0x20"),
    ]


def test_high_memory_at_90_not_80_percent(tmp_path: Path) -> None:
    groups = build_rules(Config())
    high = fires(
        groups,
        "RedisHighMemory",
        REDIS,
        90,
        summary="Redis memory at 90.0 % of maxmemory on cache-1:9121",
        runbook="redis-runbook recover oom",
    )
    assert "85 % of maxmemory (memory_pct.critical)" in high["exp_annotations"]["description"]
    result = promtool_test(
        tmp_path,
        groups,
        memory_series(),
        [
            check("4m", "RedisHighMemory"),
            check("5m", "RedisHighMemory", high),
            check("14m", "RedisMemoryWarning"),
            check(
                "15m",
                "RedisMemoryWarning",
                fires(groups, "RedisMemoryWarning", REDIS, 90),
                fires(groups, "RedisMemoryWarning", OTHER, 80),
            ),
        ],
    )
    assert_passes(result)


def test_high_memory_threshold_from_config(tmp_path: Path) -> None:
    groups = build_rules(
        config_set(thresholds__memory_pct__warning=85, thresholds__memory_pct__critical=95)
    )
    result = promtool_test(
        tmp_path,
        groups,
        memory_series(),
        [
            check("10m", "RedisHighMemory"),
            check("20m", "RedisHighMemory"),
            # 90 % is above the 85 % warning: the series are there and evaluated.
            check("15m", "RedisMemoryWarning", fires(groups, "RedisMemoryWarning", REDIS, 90)),
        ],
    )
    assert_passes(result)


def test_evicting_keys_on_an_increase(tmp_path: Path) -> None:
    groups = build_rules(Config())
    evicting = fires(groups, "RedisEvictingKeys", REDIS, 5)
    result = promtool_test(
        tmp_path,
        groups,
        [
            series("redis_evicted_keys_total", REDIS, "0 0 5 5 5"),
            series("redis_evicted_keys_total", OTHER, "7x4"),
        ],
        [
            check("1m", "RedisEvictingKeys"),
            check("2m", "RedisEvictingKeys", evicting),
            check("4m", "RedisEvictingKeys", evicting),
        ],
    )
    assert_passes(result)


def test_rdb_and_aof_failures_fire_at_once(tmp_path: Path) -> None:
    groups = build_rules(Config())
    result = promtool_test(
        tmp_path,
        groups,
        [
            series("redis_rdb_last_bgsave_status", REDIS, "1 0 0"),
            series("redis_rdb_last_bgsave_status", OTHER, "1 1 1"),
            series("redis_aof_last_write_status", REDIS, "1 1 1"),
            series("redis_aof_last_write_status", OTHER, "1 0 0"),
        ],
        [
            check("0m", "RedisRdbSaveFailing"),
            check("1m", "RedisRdbSaveFailing", fires(groups, "RedisRdbSaveFailing", REDIS, 0)),
            check("0m", "RedisAofWriteFailing"),
            check("1m", "RedisAofWriteFailing", fires(groups, "RedisAofWriteFailing", OTHER, 0)),
        ],
    )
    assert_passes(result)


def queue(name: str, instance: dict[str, str] = REDIS) -> dict[str, str]:
    """The labels of one BullMQ queue on one Redis."""
    return {**instance, "prefix": "bull", "queue": name}


def test_no_workers_only_for_an_unpaused_queue_without_workers(
    tmp_path: Path,
) -> None:
    groups = build_rules(Config())
    # (queue labels, waiting, paused, workers)
    layout = [
        (queue("emails"), "5x10", "0x10", "0x10"),
        (queue("held"), "5x10", "1x10", "0x10"),  # paused
        (queue("served"), "5x10", "0x10", "2x10"),  # has workers
        (queue("idle"), "0x10", "0x10", "0x10"),  # nothing waiting
        (queue("emails", OTHER), "5x10", "0x10", "1x10"),  # same name, other Redis
    ]
    inputs: list[dict[str, str]] = []
    for labels, waiting, paused, workers in layout:
        inputs += [
            series("bullmq_queue_jobs", {**labels, "state": "waiting"}, waiting),
            series("bullmq_queue_paused", labels, paused),
            series("bullmq_queue_workers", labels, workers),
        ]
    no_workers = fires(
        groups,
        "BullMQNoWorkers",
        {**queue("emails"), "state": "waiting"},
        5,
        summary="No workers for bull:emails on cache-1:9121",
        runbook="redis-runbook workers verify --queue emails",
    )
    result = promtool_test(
        tmp_path,
        groups,
        inputs,
        [check("4m", "BullMQNoWorkers"), check("5m", "BullMQNoWorkers", no_workers)],
    )
    assert_passes(result)


def test_stale_active_jobs_after_five_minutes(tmp_path: Path) -> None:
    groups = build_rules(Config())
    stale = fires(
        groups,
        "BullMQStaleActiveJobs",
        queue("emails"),
        3,
        summary="3 stale active jobs in bull:emails on cache-1:9121",
        runbook="redis-runbook queues recover-stale --queue emails",
    )
    result = promtool_test(
        tmp_path,
        groups,
        [
            series("bullmq_queue_stale_active_jobs", queue("emails"), "3x10"),
            series("bullmq_queue_stale_active_jobs", queue("reports"), "0x10"),
        ],
        [check("4m", "BullMQStaleActiveJobs"), check("5m", "BullMQStaleActiveJobs", stale)],
    )
    assert_passes(result)


def test_failed_jobs_growing_per_minute(tmp_path: Path) -> None:
    groups = build_rules(Config())
    failed = {**queue("emails"), "state": "failed"}
    result = promtool_test(
        tmp_path,
        groups,
        [
            series("bullmq_queue_jobs", failed, "0+20x12"),
            series("bullmq_queue_jobs", {**queue("reports"), "state": "failed"}, "0+5x12"),
        ],
        [
            check(
                "10m",
                "BullMQFailedJobsGrowing",
                fires(groups, "BullMQFailedJobsGrowing", failed, 20),
            )
        ],
    )
    assert_passes(result)


def test_fragmentation_needs_ratio_and_bytes_on_the_same_instance(
    tmp_path: Path,
) -> None:
    groups = build_rules(Config())
    result = promtool_test(
        tmp_path,
        groups,
        [
            series("redis_mem_fragmentation_ratio", REDIS, "2x40"),
            series("redis_mem_fragmentation_bytes", REDIS, f"{200 * 2**20}x40"),
            series("redis_mem_fragmentation_ratio", OTHER, "2x40"),
            series("redis_mem_fragmentation_bytes", OTHER, f"{2**20}x40"),
            series("redis_mem_fragmentation_ratio", THIRD, "1.2x40"),
            series("redis_mem_fragmentation_bytes", THIRD, f"{500 * 2**20}x40"),
        ],
        [
            check("29m", "RedisFragmentation"),
            check("30m", "RedisFragmentation", fires(groups, "RedisFragmentation", REDIS, 2)),
        ],
    )
    assert_passes(result)


RUNBOOK = {"instance": "runbook:9121", "job": "redis-runbook"}


def backup_series() -> list[dict[str, str]]:
    """An archive made at time 0, and one at 25 h (promtool's clock starts at 0)."""
    fresh = {"instance": "runbook-2:9121", "job": "redis-runbook"}
    return [
        series("redis_runbook_backup_last_timestamp_seconds", RUNBOOK, "0x2000"),
        series("redis_runbook_backup_last_timestamp_seconds", fresh, "90000x2000"),
    ]


def test_backup_too_old_past_the_rpo(tmp_path: Path) -> None:
    groups = build_rules(Config())
    too_old = fires(
        groups,
        "RedisBackupTooOld",
        RUNBOOK,
        27,
        summary="The newest Redis backup is 27.0 h old (runbook:9121)",
        runbook="redis-runbook backup create",
    )
    result = promtool_test(
        tmp_path,
        groups,
        backup_series(),
        [
            check("26h", "RedisBackupTooOld"),  # exactly the 26 h RPO: not yet
            check("27h", "RedisBackupTooOld", too_old),
        ],
    )
    assert_passes(result)


def test_backup_rpo_from_config(tmp_path: Path) -> None:
    groups = build_rules(config_set(backup__rpo_hours=30))
    result = promtool_test(
        tmp_path,
        groups,
        backup_series(),
        [
            check("27h", "RedisBackupTooOld"),
            check("31h", "RedisBackupTooOld", fires(groups, "RedisBackupTooOld", RUNBOOK, 31)),
        ],
    )
    assert_passes(result)


# --- the CLI ------------------------------------------------------------------------


def state_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The CLI's environment: its state under tmp_path, plus `extra` overrides."""
    return {"REDIS_RUNBOOK_RUNBOOK__STATE_DIR": str(tmp_path / "state"), **extra}


def out_file(tmp_path: Path) -> Path:
    """`tmp_path/out/redis.yml`, in a directory of its own."""
    (tmp_path / "out").mkdir()
    return tmp_path / "out" / "redis.yml"


def siblings(path: Path) -> list[str]:
    """The names in `path`'s directory."""
    return sorted(p.name for p in path.parent.iterdir())


def test_cli_stdout_and_json(tmp_path: Path) -> None:
    expected = build_rules(Config())
    result = run_cli("alerts", "rules", env=state_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == render_rules_yaml(expected)
    document = json.loads(run_cli("--json", "alerts", "rules", env=state_env(tmp_path)).stdout)
    assert document == {"groups": [g.to_json() for g in expected]}
    local = json.loads(
        run_cli("alerts", "rules", "--replication", "--json", env=state_env(tmp_path)).stdout
    )
    assert [g["name"] for g in local["groups"]][-1] == "redis-replication"


def test_cli_writes_a_checked_file(tmp_path: Path) -> None:
    path = out_file(tmp_path)
    result = run_cli("alerts", "rules", "-o", str(path), env=state_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert path.read_text() == render_rules_yaml(build_rules(Config()))
    assert str(path) in result.stdout
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    assert siblings(path) == ["redis.yml"]  # no temp file left behind
    assert "SUCCESS: 18 rules found" in check_rules(path)

    replicated = tmp_path / "out" / "replication.yml"
    result = run_cli(
        "alerts", "rules", "--replication", "--output", str(replicated), env=state_env(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    assert "SUCCESS: 20 rules found" in check_rules(replicated)
    assert '"RedisReplicaLinkDown"' in replicated.read_text()

    as_json = run_cli("--json", "alerts", "rules", "-o", str(path), env=state_env(tmp_path))
    document = json.loads(as_json.stdout)
    assert document["output"] == str(path)
    assert document["moved_aside"] is None
    assert len(document["groups"]) == 3


def test_cli_regenerates_over_its_own_file(tmp_path: Path) -> None:
    path = out_file(tmp_path)
    assert run_cli("alerts", "rules", "-o", str(path), env=state_env(tmp_path)).returncode == 0
    assert "> 85 and" in path.read_text()
    env = state_env(tmp_path, REDIS_RUNBOOK_THRESHOLDS__MEMORY_PCT__CRITICAL="95")
    result = run_cli("alerts", "rules", "-o", str(path), env=env)
    assert result.returncode == 0, result.stderr
    assert "> 95 and" in path.read_text()
    assert "> 85 and" not in path.read_text()
    assert siblings(path) == ["redis.yml"]


def test_cli_refuses_a_foreign_file_and_force_moves_it_aside(tmp_path: Path) -> None:
    path = out_file(tmp_path)
    mine = "groups:\n  - name: hand-written\n    rules: []\n"
    path.write_text(mine)
    refused = run_cli("alerts", "rules", "-o", str(path), env=state_env(tmp_path))
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert str(path) in refused.stderr
    assert "--force" in refused.stderr
    assert "HINT" in refused.stderr
    assert path.read_text() == mine
    assert siblings(path) == ["redis.yml"]

    forced = run_cli("alerts", "rules", "-o", str(path), "--force", env=state_env(tmp_path))
    assert forced.returncode == 0, forced.stderr
    assert path.read_text() == render_rules_yaml(build_rules(Config()))
    asides = [
        p
        for p in path.parent.iterdir()
        if re.fullmatch(r"redis\.yml\.\d{8}T\d{6}Z\.replaced", p.name)
    ]
    assert len(asides) == 1, siblings(path)
    assert asides[0].read_text() == mine
    assert asides[0].name in forced.stdout
    # A generated file is simply replaced: no second aside copy.
    again = run_cli("alerts", "rules", "-o", str(path), "--force", env=state_env(tmp_path))
    assert again.returncode == 0, again.stderr
    assert len([n for n in siblings(path) if n.endswith(".replaced")]) == 1


def test_dry_run_writes_nothing_and_says_what_it_would_write(tmp_path: Path) -> None:
    path = out_file(tmp_path)
    dry = run_cli("--dry-run", "alerts", "rules", "-o", str(path), env=state_env(tmp_path))
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert siblings(path) == []
    assert "would write 18 alerts" in dry.stdout
    assert str(path) in dry.stdout
    as_json = run_cli(
        "--dry-run", "--json", "alerts", "rules", "-o", str(path), env=state_env(tmp_path)
    )
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    assert document["dry_run"] is True
    assert document["output"] == str(path)
    assert document["moved_aside"] is None
    assert siblings(path) == []

    mine = "groups: []\n"
    path.write_text(mine)
    refused = run_cli("--dry-run", "alerts", "rules", "-o", str(path), env=state_env(tmp_path))
    assert refused.returncode == 3, refused.stdout + refused.stderr
    forced = run_cli(
        "--dry-run", "alerts", "rules", "-o", str(path), "--force", env=state_env(tmp_path)
    )
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "would move" in forced.stdout
    assert path.read_text() == mine
    assert siblings(path) == ["redis.yml"]


def test_cli_output_in_a_missing_directory_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "redis.yml"
    result = run_cli("alerts", "rules", "-o", str(path), env=state_env(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "does not exist" in result.stderr
    assert not path.parent.exists()


def test_a_replicated_target_gets_the_replication_rules_without_the_flag(tmp_path: Path) -> None:
    config = tmp_path / "runbook.toml"
    config.write_text('[target]\nreplicas = ["127.0.0.1:7001"]\n')
    done = run_cli("--config", str(config), "alerts", "rules", env={})
    assert done.returncode == 0, done.stderr
    assert "RedisReplicaLinkDown" in done.stdout
    plain = run_cli("alerts", "rules", env={})
    assert "RedisReplicaLinkDown" not in plain.stdout


def test_sentinel_rules_fire_on_the_topology_checks(tmp_path: Path) -> None:
    groups = build_rules(Config(), sentinel=True)
    status = "redis_runbook_check_status"
    inputs = [
        series(status, {**REDIS, "check": "sentinel_quorum"}, "0 2 2 2"),
        series(status, {**REDIS, "check": "split_brain"}, "0 0 2 2"),
        series(status, {**OTHER, "check": "sentinel_quorum"}, "0 0 0 0"),
    ]
    quorum = fires(groups, "RedisSentinelNoQuorum", {**REDIS, "check": "sentinel_quorum"}, 2)
    split = fires(groups, "RedisSplitBrain", {**REDIS, "check": "split_brain"}, 2)
    checks = [
        check("1m", "RedisSentinelNoQuorum"),  # pending: bad for less than 1m
        check("2m", "RedisSentinelNoQuorum", quorum),
        check("1m", "RedisSplitBrain"),
        check("2m", "RedisSplitBrain", split),
    ]
    assert_passes(promtool_test(tmp_path, groups, inputs, checks))


def test_a_sentinel_target_gets_the_sentinel_rules(tmp_path: Path) -> None:
    config = tmp_path / "runbook.toml"
    config.write_text('[target.sentinel]\nservice = "mymaster"\naddresses = ["127.0.0.1:26379"]\n')
    done = run_cli("--config", str(config), "alerts", "rules", env={})
    assert done.returncode == 0, done.stderr
    assert "RedisSplitBrain" in done.stdout
    assert "RedisReplicaLinkDown" in done.stdout
    rules = tmp_path / "rules.yml"
    rules.write_text(done.stdout)
    assert "SUCCESS: 26 rules found" in check_rules(rules)
