"""`redis-runbook workers verify` (seed §5.4)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from redis_runbook.cli.context import globals_of
from redis_runbook.cli.queues import QueueOption, queue_session
from redis_runbook.cli.render import out, plain, print_json
from redis_runbook.defaults import CANARY_JOB
from redis_runbook.errors import RunbookError, SecretError

if TYPE_CHECKING:
    from rich.table import Table

    from redis_runbook.bullmq.verify import CanaryMode, QueueVerdict

app = typer.Typer(help="Are workers consuming? (seed §5.4)", no_args_is_help=True)

EXIT_BY_VERDICT = {
    "processing": 0, "busy": 0, "idle-with-workers": 0, "cannot-verify": 1, "canary-failed": 1,
    "no-workers": 2, "wedged": 2,
}  # fmt: skip

CANARY_COST = (
    "A canary is a real job: your processor runs it (data {canary: true}; processors should "
    "return at once for its name), it leaves events in the queue's stream (a failing one "
    "'failed' and 'retries-exhausted', which alerting sees) and +1 in metrics:completed/failed "
    "when worker metrics are on; it is removed afterwards."
)


def _canary_cell(v: QueueVerdict) -> str:
    c = v.canary
    if not c.sent:
        return "not sent"
    if c.outcome == "completed" and c.ms is not None:
        return f"{c.ms:.0f} ms"
    if c.outcome == "failed":
        return f"FAILED ({c.failed_reason})"
    return "not picked up"


def verdict_table(verdicts: list[QueueVerdict], target: str) -> Table:
    """One row per queue."""
    from rich.table import Table

    table = Table(title=plain(f"BullMQ workers: {target}"), title_justify="left")
    for name in ("queue", "verdict", "workers", "canary", "evidence"):
        table.add_column(name, no_wrap=name == "queue")
    for v in verdicts:
        table.add_row(
            plain(v.queue.display),
            v.verdict,
            "n/a" if v.workers is None else str(v.workers),
            _canary_cell(v),
            plain("; ".join(v.evidence)),
        )
    return table


class CannotVerify(RunbookError):
    """The workers could not be verified (exit 1, like a Redis that does not answer)."""

    exit_code = 1


@contextlib.contextmanager
def _cannot_verify_without_secret() -> Iterator[None]:
    """A secret source that fails means the workers cannot be verified (exit 1), not
    that they are wedged or missing (exit 2 would page someone about the workers)."""
    try:
        yield
    except SecretError as exc:
        raise CannotVerify(exc.message, exc.hint) from None


@app.command("verify")
def verify_cmd(
    ctx: typer.Context,
    queue: QueueOption = None,
    passive_only: Annotated[
        bool, typer.Option("--passive", help="Never send a canary job: watch only.")
    ] = False,
    always_canary: Annotated[
        bool,
        typer.Option(
            "--canary",
            help="Send a canary even where locks and completions already prove consumption, "
            "and into rate-limited or globally limited queues (it jumps their backlog).",
        ),
    ] = False,
    job_name: Annotated[
        str, typer.Option("--job-name", help="The canary's job name (processors skip it).")
    ] = CANARY_JOB,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Seconds to wait for the canary.")
    ] = 30.0,
    sample: Annotated[
        float, typer.Option("--sample", min=0.1, help="Seconds between the two samples.")
    ] = 2.0,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Seed §5.4: per queue, worker connections, locks being renewed, jobs starting
    and finishing; a canary job (LIFO, attempts 1, removed after) only where that
    proves nothing. The canary costs one run of your processor, events and metrics.
    processing / busy (every slot held by a live worker) / idle with workers / no
    workers / wedged / cannot verify (paused, limited, locks not yet renewed) /
    canary failed. Exit 0 consuming, busy or idle, 1 cannot verify or canary failed,
    2 wedged or no workers."""
    from redis_runbook.bullmq.verify import verify

    options = globals_of(ctx)
    if passive_only and always_canary:
        raise typer.BadParameter("choose --passive or --canary, not both")
    mode: CanaryMode = "never" if passive_only else "always" if always_canary else "auto"
    config = options.load().config
    with _cannot_verify_without_secret(), queue_session(config, queue) as (client, found, where):
        verdicts = verify(
            client,
            config.target,
            found.queues,
            sample_s=sample,
            canary_mode=mode,
            job_name=job_name,
            timeout_s=timeout,
        )
    if json_output or options.json:
        print_json({"target": where, "queues": [v.to_json() for v in verdicts]})
    else:
        out.print(verdict_table(verdicts, where))
        if any(v.canary.sent for v in verdicts):
            out.print(CANARY_COST, markup=False, soft_wrap=True)
    raise typer.Exit(max((EXIT_BY_VERDICT[v.verdict] for v in verdicts), default=0))
