"""`redis-runbook config show | validate`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from redis_runbook.cli.context import globals_of
from redis_runbook.cli.render import out, print_json

if TYPE_CHECKING:
    from redis_runbook.config import LoadedConfig

app = typer.Typer(help="Show or validate the configuration.", no_args_is_help=True)


def redacted(loaded: LoadedConfig) -> dict[str, Any]:
    """The effective configuration with every secret replaced by `***`. Secret
    *sources* (env var names, file paths, commands) are shown: they are not secrets."""
    from redis_runbook.config.monitoring import shown_webhook_url
    from redis_runbook.target import display_url

    data = loaded.config.model_dump(mode="json", exclude_none=True)
    data["target"]["url"] = display_url(loaded.config.target.url)
    for hook in data["alerts"]["webhooks"]:
        if "url" in hook:
            hook["url"] = shown_webhook_url(hook["url"])
    return data


def _source(loaded: LoadedConfig) -> str:
    where = str(loaded.path) if loaded.path else "built-in defaults (the seed's deployment)"
    if loaded.env_overrides:
        where += " + env " + ", ".join(loaded.env_overrides)
    return where


@app.command("show")
def show(
    ctx: typer.Context,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Print the effective configuration (file + env overrides + defaults), secrets
    redacted."""
    from redis_runbook.config import toml

    loaded = globals_of(ctx).load()
    data = redacted(loaded)
    if json_output or globals_of(ctx).json:
        print_json({"source": _source(loaded), "config": data})
        return
    out.print(f"# source: {_source(loaded)}", markup=False)
    out.print(toml.dumps(data), markup=False, end="")


@app.command("validate")
def validate(ctx: typer.Context) -> None:
    """Check the configuration without touching anything. Exit 0 valid, 2 invalid."""
    loaded = globals_of(ctx).load()
    out.print(f"configuration OK: {_source(loaded)}", markup=False)
