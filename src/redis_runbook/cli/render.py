"""Rendering helpers shared by the command modules: consoles (colour only on a
TTY; Rich honours NO_COLOR), JSON output, errors with their HINT line.

Rich loads when something is first drawn with it, not when this module loads: `out`
and `err` are made on first use (`render.out`, or `from ... import out` in a command
module that draws), so a `--json` report, which writes with print_json, never loads
Rich."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from redis_runbook.errors import RunbookError
from redis_runbook.status import CheckResult, Status

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from redis_runbook.checks import HealthReport

    out: Console  # stdout
    err: Console  # stderr


def _console(name: str) -> Console:
    """The console `out` or `err`, made on first use and kept as the module's own."""
    made: Console | None = globals().get(name)
    if made is None:
        from rich.console import Console

        if name == "out":
            made = Console(highlight=False, soft_wrap=False)
            if not made.is_terminal:
                made.width = 160  # logs and pipes: no terminal to fit, keep rows on one line
        else:
            made = Console(stderr=True, highlight=False, soft_wrap=True)
        globals()[name] = made
    return made


if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        """`render.out`, `render.err` (PEP 562): made on first use."""
        if name in ("out", "err"):
            return _console(name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


STATUS_STYLE = {
    Status.OK: "green",
    Status.WARNING: "yellow",
    Status.CRITICAL: "bold red",
    Status.UNKNOWN: "magenta",
}


def print_json(document: Any, compact: bool = False) -> None:
    """One JSON document on stdout; `compact` puts it on one line (JSON Lines)."""
    indent = None if compact else 2
    sys.stdout.write(json.dumps(document, indent=indent, default=str) + "\n")
    sys.stdout.flush()


def print_error(error: RunbookError) -> None:
    """`error: <message>` and `HINT: <next command>` on stderr; several problems (a
    config with more than one mistake) are each one `error:` line. Every text is
    plain: `[target]` in a hint is a config section, not Rich markup."""
    from rich.text import Text

    problems = getattr(error, "problems", None) or []
    stderr = _console("err")
    for line in problems if len(problems) > 1 else [error.message]:
        stderr.print(Text("error: ", style="bold red") + Text(line))
    stderr.print(Text("HINT: ", style="bold") + Text(error.hint))


def plain(text: str) -> Text:
    """`text` as it is (Rich would read `[target]` or `[bold]` in a str as markup)."""
    from rich.text import Text

    return Text(text)


def grouped_hints(checks: list[CheckResult]) -> list[str]:
    """`HINT (check, ...): hint` once per distinct hint of the checks that are not OK
    (an ACL-limited user gets the same hint from a dozen checks: it is said once)."""
    names: dict[str, list[str]] = {}
    for check in checks:
        if check.hint and check.status is not Status.OK:
            names.setdefault(check.hint, []).append(check.name)
    lines = []
    for hint, who in names.items():
        shown = ", ".join(who[:3]) + (f" and {len(who) - 3} more" if len(who) > 3 else "")
        lines.append(f"HINT ({shown}): {hint}")
    return lines


def status_text(status: Status) -> Text:
    """A coloured status word."""
    from rich.text import Text

    return Text(status.name, style=STATUS_STYLE[status])


def health_table(report: HealthReport) -> Table:
    """The human health report: one row per check, hints below the table."""
    from rich.table import Table  # not for --json: Rich's tables are a slow import

    snapshot = report.snapshot
    version = report.server.get("redis_version")
    title = f"Redis health: {snapshot.target}" + (f" (Redis {version})" if version else "")
    table = Table(title=plain(title), title_justify="left", expand=False)
    table.add_column("status", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("value", no_wrap=True, justify="right")
    table.add_column("threshold")
    table.add_column("summary")
    for check in report.checks:
        table.add_row(
            status_text(check.status),
            plain(check.name),
            plain(check.value),
            plain(check.threshold),
            plain(check.summary),
        )
    caption = [f"overall {report.status.name} in {report.elapsed_ms:.0f} ms"]
    caption += grouped_hints(report.checks)
    table.caption = plain("\n".join(caption))
    table.caption_justify = "left"
    return table
