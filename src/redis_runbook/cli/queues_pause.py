"""`redis-runbook queues pause|resume [--queue Q | --all]`: BullMQ v5's global pause
as a plan (show, --dry-run, y/N, journal, lock); the journal records the queues this
tool paused, so `resume --all` resumes those and no other."""

from __future__ import annotations

from typing import Annotated

import typer

from redis_runbook.cli.context import globals_of
from redis_runbook.cli.procedure import run_plan
from redis_runbook.errors import ConfigError

QueuesOption = Annotated[
    list[str] | None,
    typer.Option("--queue", "-q", help="This queue (repeatable)."),
]


def _selection(verb: str, queue: list[str] | None, every: bool) -> None:
    """ConfigError (exit 2) unless exactly one of --queue and --all was given."""
    if every and queue:
        raise ConfigError(
            f"queues {verb}: give --queue or --all, not both",
            f"redis-runbook queues {verb} --all, or redis-runbook queues {verb} --queue NAME",
        )
    if not every and not queue:
        raise ConfigError(
            f"queues {verb}: name the queues with --queue NAME, or give --all",
            f"redis-runbook queues {verb} --all (the queue names: redis-runbook queues status)",
        )


def _run(ctx: typer.Context, verb: str, queue: list[str] | None, every: bool) -> None:
    _selection(verb, queue, every)
    from redis_runbook.cli.queues import queue_session
    from redis_runbook.procedures.context import ProcedureContext
    from redis_runbook.procedures.pause import plan_pause, plan_resume

    config = globals_of(ctx).load().config
    with queue_session(config, queue) as (_client, found, _where):
        queues = found.queues
    pctx = ProcedureContext(config)
    build = plan_pause if verb == "pause" else plan_resume
    run_plan(ctx, pctx, build(pctx, queues, named=not every))


def pause(
    ctx: typer.Context,
    queue: QueuesOption = None,
    every: Annotated[
        bool, typer.Option("--all", help="Every running v5 queue under the prefixes.")
    ] = False,
) -> None:
    """Pause queues as Node's queue.pause() does in BullMQ v5 (wait renamed to paused,
    meta paused, marker removed, a `paused` event): workers take no new job, jobs added
    meanwhile wait in the paused list, running jobs finish. A queue already paused is
    left as it is; the journal records the queues this command paused."""
    _run(ctx, "pause", queue, every)


def resume(
    ctx: typer.Context,
    queue: QueuesOption = None,
    every: Annotated[
        bool,
        typer.Option(
            "--all",
            help="Exactly the queues redis-runbook paused (the journal), not one paused "
            "by someone else.",
        ),
    ] = False,
) -> None:
    """Resume queues as Node's queue.resume() does in BullMQ v5 (paused renamed back
    to wait, meta paused removed, marker set, a `resumed` event). --all resumes only
    the queues `queues pause` paused and nobody paused or resumed since; --queue
    resumes the queues named, whoever paused them."""
    _run(ctx, "resume", queue, every)
