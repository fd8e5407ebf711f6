"""`redis-runbook workers verify` (seed §5.4)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated

import typer
from rich.table import Table

from redis_runbook.bullmq.verify import CANARY_JOB, QueueVerdict, verify
from redis_runbook.cli.context import globals_of
from redis_runbook.cli.queues import QueueOption, queue_session
from redis_runbook.cli.render import out, plain, print_json
from redis_runbook.errors import RunbookError, SecretError

app = typer.Typer(help="Are workers consuming? (seed §5.4)", no_args_is_help=True)

EXIT_BY_VERDICT = {
    "processing": 0, "idle-with-workers": 0, "cannot-verify": 1, "no-workers": 2, "wedged": 2,
}  # fmt: skip


def verdict_table(verdicts: list[QueueVerdict], target: str) -> Table:
    """One row per queue."""
    table = Table(title=plain(f"BullMQ workers: {target}"), title_justify="left")
    for name in ("queue", "verdict", "workers", "canary", "evidence"):
        table.add_column(name, no_wrap=name == "queue")
    for v in verdicts:
        table.add_row(
            plain(v.queue.display),
            v.verdict,
            "n/a" if v.workers is None else str(v.workers),
            "-" if v.canary_ms is None else f"{v.canary_ms:.0f} ms",
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
        bool, typer.Option("--passive", help="No canary job: watch only.")
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
    """Seed §5.4: per queue, worker connections, locks being renewed, completions
    advancing, and a canary job round trip (LIFO, attempts 1, removed on timeout):
    processing / idle with workers / no workers / wedged / cannot verify (paused).
    Exit 0 all consuming or idle, 1 something could not be verified, 2 wedged or no
    workers."""
    options = globals_of(ctx)
    config = options.load().config
    with _cannot_verify_without_secret(), queue_session(config, queue) as (client, found, where):
        verdicts = verify(
            client,
            config.target,
            found.queues,
            sample_s=sample,
            use_canary=not passive_only,
            job_name=job_name,
            timeout_s=timeout,
        )
    if json_output or options.json:
        print_json({"target": where, "queues": [v.to_json() for v in verdicts]})
    else:
        out.print(verdict_table(verdicts, where))
    raise typer.Exit(max((EXIT_BY_VERDICT[v.verdict] for v in verdicts), default=0))
