"""Configuration: seed defaults, file + env layering, and every bad-input case
(one line naming the source, the key, what was expected and what was found)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from redis_runbook.config import Config, load_config
from redis_runbook.config.base import Section
from redis_runbook.errors import EXIT_USAGE, ConfigError
from tests.support.config import write_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "redis-runbook.toml"
    path.write_text(text)
    return path


def problems_of(path: Path | None, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=env or {})
    assert caught.value.exit_code == EXIT_USAGE
    return caught.value.problems


def test_defaults_describe_the_seed_deployment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./redis-runbook.toml here
    loaded = load_config(None, env={})
    config = loaded.config
    assert loaded.path is None
    assert config.target.url == "redis://127.0.0.1:6379/0"
    assert config.target.connect_timeout == 2.0
    assert config.service.kind == "compose"
    assert config.service.compose_service == "redis"
    assert config.service.data_dir == Path("/data/redis-data")
    assert config.service.owner == "999:999"
    assert config.server.appendonly is True
    assert config.server.appendfsync == "everysec"
    assert config.server.maxmemory_bytes == 8 * 1024**3
    t = config.thresholds
    assert (t.memory_pct.warning, t.memory_pct.critical) == (70, 85)
    assert (t.connected_clients.warning, t.connected_clients.critical) == (200, 500)
    assert (t.evicted_keys.warning, t.evicted_keys.critical) == (0, 100)
    assert (t.aof_rewrite_seconds.warning, t.aof_rewrite_seconds.critical) == (10, 60)
    assert (t.latency_ms.warning, t.latency_ms.critical) == (1, 10)
    patterns = {c.name: (c.pattern, c.rebuildable) for c in config.categories}
    assert patterns["bullmq"] == ("bull:*", False)
    assert patterns["session"] == ("session:*", False)
    assert patterns["ratelimit"] == ("ratelimit:*", True)
    assert patterns["cache"] == ("cache:*", True)
    assert config.bullmq.prefixes == ["bull"]


def test_file_then_env_layering_keeps_other_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[target]\nurl = "redis://10.1.2.3:6380/2"\n[thresholds.memory_pct]\nwarning = 60\n',
    )
    env = {
        "REDIS_RUNBOOK_THRESHOLDS__MEMORY_PCT__CRITICAL": "80",
        "REDIS_RUNBOOK_BULLMQ__PREFIXES": '["bull", "{bull}"]',
        "REDIS_RUNBOOK_TARGET__CONNECT_TIMEOUT": "0.5",
    }
    loaded = load_config(path, env=env)
    assert loaded.path == path
    assert loaded.config.target.url == "redis://10.1.2.3:6380/2"
    assert loaded.config.target.connect_timeout == 0.5
    assert loaded.config.thresholds.memory_pct.warning == 60
    assert loaded.config.thresholds.memory_pct.critical == 80
    assert loaded.config.thresholds.connected_clients.warning == 200  # untouched default
    assert loaded.config.bullmq.prefixes == ["bull", "{bull}"]
    assert set(loaded.env_overrides) == set(env)


def test_lookup_order_env_var_then_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cwd_file = write(tmp_path, '[target]\nurl = "redis://cwd:1/0"\n')
    assert load_config(None, env={}).path == Path("redis-runbook.toml")
    other = tmp_path / "other.toml"
    other.write_text('[target]\nurl = "redis://other:1/0"\n')
    loaded = load_config(None, env={"REDIS_RUNBOOK_CONFIG": str(other)})
    assert loaded.config.target.url == "redis://other:1/0"
    explicit = load_config(cwd_file, env={"REDIS_RUNBOOK_CONFIG": str(other)})
    assert explicit.config.target.url == "redis://cwd:1/0"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[target\nurl = 1\n", "invalid TOML"),
        ("[thresholds]\nmemroy_pct = 3\n", "thresholds.memroy_pct: unknown key (expected one of:"),
        ("[nonsense]\na = 1\n", "nonsense: unknown key"),
        (
            '[thresholds.connected_clients]\nwarning = "many"\n',
            "thresholds.connected_clients.warning: expected a valid number",
        ),
        (
            "[thresholds.memory_pct]\nwarning = 90\ncritical = 80\n",
            "thresholds.memory_pct: warning (90) must not be above critical (80)",
        ),
        (
            "[thresholds.memory_pct]\nwarning = 70\ncritical = 120\n",
            "thresholds.memory_pct.critical: expected less than or equal to 100, got 120",
        ),
        (
            "[thresholds.evicted_keys]\nwarning = -1\ncritical = 5\n",
            "thresholds.evicted_keys.warning: expected greater than or equal to 0, got -1",
        ),
        ('[target]\nurl = "http://localhost:6379"\n', "expected a redis://, rediss:// or unix://"),
        ("[target]\nconnect_timeout = 0\n", "target.connect_timeout: expected greater than 0"),
        ('[service]\nkind = "kubernetes"\n', "service.kind: expected 'compose', 'systemd' or"),
        ('[service]\nowner = "redis"\n', "service.owner: expected uid:gid like 999:999"),
        ('[server]\nmaxmemory = "lots"\n', "expected a size like 8gb"),
        (
            '[target]\nurl = "rediss://h:6380"\ntls_ca = "/nonexistent/ca.pem"\n',
            "tls_ca: expected an existing file, got '/nonexistent/ca.pem'",
        ),
        (
            '[target]\nurl = "redis://h:6379"\ntls_ca = "/etc/hostname"\n',
            "tls_ca is set but url is not rediss://",
        ),
        (
            '[target]\npassword_env = "A"\npassword_file = "/etc/hostname"\n',
            "choose one password source, got password_env and password_file",
        ),
        ("[bullmq]\nprefixes = []\n", "bullmq.prefixes: expected a non-empty list"),
        (
            '[[bullmq.expected_schedulers]]\nqueue = "reports"\n',
            "bullmq.expected_schedulers.0.id: field required",
        ),
        (
            '[[bullmq.expected_schedulers]]\nqueue = "reports"\nid = ""\n',
            "bullmq.expected_schedulers.0.id: expected a non-empty string, got ''",
        ),
        (
            '[[bullmq.expected_schedulers]]\nqueue = "r"\nid = "x"\nevery = 5\n',
            "bullmq.expected_schedulers.0.every: unknown key (expected one of: queue, id, prefix)",
        ),
    ],
)
def test_bad_config_file_is_one_clear_line(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    problems = problems_of(path)
    assert any(expected in p for p in problems), problems
    assert all(p.startswith(str(path)) for p in problems), problems
    assert all("\n" not in p for p in problems)


def test_bad_env_override_names_the_variable() -> None:
    problems = problems_of(None, {"REDIS_RUNBOOK_THRESHOLDS__MEMORY_PCT__WARNING": "120"})
    assert problems == [
        "env REDIS_RUNBOOK_THRESHOLDS__MEMORY_PCT__WARNING: thresholds.memory_pct.warning: "
        "expected less than or equal to 100, got '120'"
    ]
    unknown = problems_of(None, {"REDIS_RUNBOOK_TARGET__HOSTNAME": "x"})
    assert unknown[0].startswith("env REDIS_RUNBOOK_TARGET__HOSTNAME: target.hostname: unknown key")


def test_missing_explicit_or_env_config_file(tmp_path: Path) -> None:
    assert "config file not found" in problems_of(tmp_path / "absent.toml")[0]
    env = {"REDIS_RUNBOOK_CONFIG": str(tmp_path / "absent.toml")}
    assert "from $REDIS_RUNBOOK_CONFIG" in problems_of(None, env)[0]


def test_every_problem_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, '[target]\nurl = "ftp://x"\n[service]\nowner = "x"\n')
    problems = problems_of(path)
    assert len(problems) == 2
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert str(caught.value).endswith("(and 1 more)")


def test_defaults_round_trip_through_toml(tmp_path: Path) -> None:
    from redis_runbook.config.toml import dumps

    path = write(tmp_path, dumps(Config().model_dump(mode="json", exclude_none=True)))
    assert load_config(path, env={}).config == Config()


def test_config_loading_reads_no_environment_secrets(tmp_path: Path) -> None:
    """Loading the config only names secret sources; it never resolves them."""
    path = write(tmp_path, '[target]\npassword_env = "SURELY_UNSET_VARIABLE_123"\n')
    assert "SURELY_UNSET_VARIABLE_123" not in os.environ
    assert load_config(path, env={}).config.target.password_env == "SURELY_UNSET_VARIABLE_123"


# --- [target] url: the whole URL is validated, and a password in it is never echoed ------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:70000/0", "port 70000 is out of range (expected 1-65535)"),
        ("redis://127.0.0.1:0/0", "port 0 is out of range (expected 1-65535)"),
        ("redis://127.0.0.1:abc/0", "port 'abc' is not a number (expected 1-65535)"),
        ("redis://127.0.0.1:6379/notadb", "db 'notadb' is not a non-negative integer"),
        ("redis://127.0.0.1:6379/-1", "db '-1' is not a non-negative integer"),
        ("redis://127.0.0.1:6379/0?db=x", "db 'x' is not a non-negative integer"),
        ("redis://127.0.0.1:6379/1?db=2", "the db is given twice"),
        ("redis:///0", "no host"),
        ("rediss://:6380/0", "no host"),
        ("unix:///x.sock?db=x", "db 'x' is not a non-negative integer"),
        ("unix://", "no socket path"),
        ("unix://run/redis.sock", "no socket path"),
        ("redis://127.0.0.1:6379/0?socket_timeout=1", "unknown query parameter 'socket_timeout'"),
    ],
)
def test_bad_target_url_names_file_key_expected_and_found(
    tmp_path: Path, url: str, expected: str
) -> None:
    path = write(tmp_path, f'[target]\nurl = "{url}"\n')
    problems = problems_of(path)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}: target.url: "), problems
    assert expected in problems[0], problems
    assert "got " in problems[0], problems


@pytest.mark.parametrize(
    "url",
    [
        "http://u:CANARY-pw-1@127.0.0.1:1/0",
        "redis://u:CANARY-pw-1@127.0.0.1:70000/0",
        "redis://:CANARY-pw-1@127.0.0.1:abc/0",
        "rediss://u:CANARY-pw-1@127.0.0.1:6380/notadb",
        "redis://u:CANARY@pw-1@127.0.0.1:6379/x",
        "redis://u:CANARY/pw-1@127.0.0.1:6379/0",
        "unix://u:CANARY-pw-1@/x.sock?db=x",
    ],
)
def test_bad_target_url_never_echoes_its_password(tmp_path: Path, url: str) -> None:
    path = write(tmp_path, f'[target]\nurl = "{url}"\n')
    problems = problems_of(path)
    assert problems
    assert all("CANARY" not in p and "pw-1" not in p for p in problems), problems
    assert any(":***@" in p for p in problems), problems
    env_problems = problems_of(None, {"REDIS_RUNBOOK_TARGET__URL": url})
    assert all("CANARY" not in p and "pw-1" not in p for p in env_problems), env_problems


@pytest.mark.parametrize(
    ("url", "db"),
    [
        ("redis://127.0.0.1:6379", 0),
        ("redis://127.0.0.1/", 0),
        ("redis://127.0.0.1:6380/15", 15),
        ("rediss://u:pw@redis.internal:6380/2", 2),
        ("redis://[::1]:6379/1", 1),
        ("unix:///run/redis/redis.sock", 0),
        ("unix:///run/redis/redis.sock?db=3", 3),
    ],
)
def test_good_target_urls_validate(tmp_path: Path, url: str, db: int) -> None:
    path = write(tmp_path, f'[target]\nurl = "{url}"\n')
    assert load_config(path, env={}).config.target.db == db


def test_config_validate_and_commands_refuse_a_bad_port_with_exit_2(tmp_path: Path) -> None:
    from tests.support.cli import run_cli

    path = write(tmp_path, '[target]\nurl = "redis://127.0.0.1:70000/0"\n')
    for command in (("config", "validate"), ("health",), ("keys", "stats")):
        result = run_cli("--config", str(path), *command)
        assert result.returncode == EXIT_USAGE, (command, result.stderr)
        assert "Traceback" not in result.stderr
        assert f"error: {path}: target.url: port 70000 is out of range" in result.stderr
        assert "HINT: " in result.stderr


def test_expected_schedulers_default_to_the_first_prefix(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "rr.toml",
        {
            "bullmq": {
                "prefixes": ["{app}", "bull"],
                "expected_schedulers": [
                    {"queue": "mail", "id": "digest"},
                    {"queue": "reports", "id": "hourly", "prefix": "bull"},
                ],
            }
        },
    )
    bullmq = load_config(path, env={}).config.bullmq
    assert bullmq.expected() == [("{app}", "mail", "digest"), ("bull", "reports", "hourly")]
    assert Config().bullmq.expected_schedulers == []


def test_the_default_state_dir_comes_from_the_env_given_not_the_process(tmp_path: Path) -> None:
    """load_config(env=...) reads XDG_STATE_HOME (then HOME) from that env only."""
    loaded = load_config(env={"XDG_STATE_HOME": str(tmp_path / "xdg")})
    assert loaded.config.runbook.state_dir == tmp_path / "xdg" / "redis-runbook"
    loaded = load_config(env={"HOME": str(tmp_path / "home")})
    assert loaded.config.runbook.state_dir == tmp_path / "home/.local/state/redis-runbook"
    write_config(tmp_path / "c.toml", {"runbook": {"state_dir": str(tmp_path / "set")}})
    loaded = load_config(tmp_path / "c.toml", env={"XDG_STATE_HOME": str(tmp_path / "xdg")})
    assert loaded.config.runbook.state_dir == tmp_path / "set"


def test_no_default_factory_has_its_signature_parsed_from_text() -> None:
    """pydantic reads the signature of every default_factory; a builtin's (`list`) is
    parsed from its text with tokenize, whose regex is compiled on first use — about
    3 ms of every CLI start (issue 15). Empty lists come from config.base.new_list."""

    def sections(cls: type[Section]) -> list[type[Section]]:
        return [cls, *(s for sub in cls.__subclasses__() for s in sections(sub))]

    parsed = [
        f"{cls.__name__}.{name}"
        for cls in sections(Section)
        for name, field in cls.model_fields.items()
        if getattr(field.default_factory, "__text_signature__", None)
    ]
    assert len(sections(Section)) > 20  # every section is seen
    assert parsed == []
