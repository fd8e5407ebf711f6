"""The layers of docs/architecture.md, checked on the source: every `import` of every
module (top-level and inside functions) is read with `ast`, so a new upward import
fails here instead of growing a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.paths import ROOT

PACKAGE = ROOT / "src" / "redis_runbook"

#: Top to bottom. A module may import its own layer and the layers below it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("cli", "__main__"),
    ("lab",),
    ("procedures", "diagnose", "monitoring", "checklist", "perf"),
    ("checks", "snapshot", "stall", "keyspace_purge"),
    (
        "backup",
        "bullmq",
        "persistence",
        "service",
        "throwaway",
        "keyspace",
        "keyspace_estimate",
        "postgres",
        "readiness",
        "locks",
        "journal",
        "aside",
        "bgsave",
        "inflight",
    ),
    ("target", "memory", "children", "ports"),
    # The floor: configuration and the pure parsers it validates with (a target URL,
    # a BullMQ queue name or job id template), and the defaults and fault names the
    # CLI declares its options with before it loads anything else.
    (
        "config",
        "defaults",
        "fault_catalogue",
        "errors",
        "redaction",
        "status",
        "redislog",
        "replies",
        "units",
        "globs",
        "target_url",
        "bullmq.keys",
        "bullmq.jobid",
        "__init__",
    ),
)
RENDERING = ("typer", "rich", "click")


def dotted(module: Path) -> str:
    """`procedures.aof` for procedures/aof.py, `bullmq` for bullmq/__init__.py."""
    parts = module.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def layer_of(name: str) -> int:
    """The layer of a dotted module name: its own entry (`bullmq.keys`), else its
    package's (`bullmq`)."""
    for candidate in (name, name.split(".")[0]):
        for rank, names in enumerate(LAYERS):
            if candidate in names:
                return rank
    raise AssertionError(
        f"redis_runbook.{name} is in no layer of tests/system/test_architecture.py"
    )


def is_module_path(name: str) -> bool:
    """True when `name` (dotted, from `redis_runbook.`) is a module or package here."""
    return name.startswith("redis_runbook.") and is_module(name.removeprefix("redis_runbook."))


def is_module(name: str) -> bool:
    """True when `name` (dotted, under redis_runbook) is a module or package here."""
    path = PACKAGE.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(module: Path) -> list[tuple[str, int]]:
    """(imported module, line) for every import in `module`, relative ones resolved."""
    tree = ast.parse(module.read_text(), str(module))
    package = ".".join(("redis_runbook", *module.relative_to(PACKAGE).parent.parts))
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            # `from redis_runbook.lab import pglab` depends on that module, not on the
            # whole package; `from redis_runbook.config import Config` on the package.
            modules = [f"{base}.{a.name}" for a in node.names if is_module_path(f"{base}.{a.name}")]
            found += [(name, node.lineno) for name in modules or [base]]
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_is_in_a_layer() -> None:
    assert [layer_of(dotted(m)) for m in MODULES]  # raises naming the first one missing


@pytest.mark.parametrize("module", MODULES, ids=lambda m: str(m.relative_to(PACKAGE)))
def test_no_import_goes_up_a_layer(module: Path) -> None:
    """A module imports its own layer and the ones below: the CLI renders, procedures
    and reports decide, services and targets act, config and errors are the floor."""
    own = dotted(module)
    upward = []
    for name, line in imports_of(module):
        inner = name.removeprefix("redis_runbook.")
        if inner == name or not is_module(inner) or inner.split(".")[0] == own.split(".")[0]:
            continue
        if layer_of(inner) < layer_of(own):
            upward.append(f"line {line}: {name}")
    assert upward == []


@pytest.mark.parametrize(
    "module",
    [m for m in MODULES if dotted(m).split(".")[0] != "cli"],
    ids=lambda m: str(m.relative_to(PACKAGE)),
)
def test_only_the_cli_renders(module: Path) -> None:
    """The library never prints or exits: typer, rich and click belong to cli/."""
    rendering = [
        f"line {line}: {name}"
        for name, line in imports_of(module)
        if name.split(".")[0] in RENDERING
    ]
    assert rendering == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The walker finds imports inside functions and `from redis_runbook import x`."""
    module = PACKAGE / "errors.py"
    names = {name for name, _ in imports_of(module)}
    assert "redis_runbook.redaction" in names
    lazy = tmp_path / "lazy.py"
    lazy.write_text("def f():\n    from redis_runbook import cli\n")
    tree = ast.parse(lazy.read_text())
    assert any(isinstance(node, ast.ImportFrom) for node in ast.walk(tree))


def test_no_import_cycle() -> None:
    """No module reaches itself through the imports of others, lazy ones included
    (a lazy import only hides a cycle)."""
    graph: dict[str, set[str]] = {}
    for module in MODULES:
        own = dotted(module)
        graph[own] = {
            name.removeprefix("redis_runbook.")
            for name, _ in imports_of(module)
            if is_module_path(name) and name.removeprefix("redis_runbook.") != own
        }
    cycles = []
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            cycles.append(" -> ".join([*path[path.index(node) :], node]))
            return
        if node in done:
            return
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, [*path, node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])
    assert cycles == []
