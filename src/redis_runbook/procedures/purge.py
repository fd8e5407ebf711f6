"""`keys purge` (seed §1.2 + §3.2): delete one or more data categories with the
safe purge (SCAN + pipelined UNLINK), as a Plan: the keys per category counted
while planning, DBSIZE, one purge walk per category, DBSIZE again.

Rebuildable categories (cache, ratelimit) need a y/N; a category that is not
rebuildable (BullMQ queues, sessions) is refused unless the caller names it in
`allow_critical`, and then the operator must type its name."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from redis_runbook.config import Category
from redis_runbook.defaults import DEFAULT_BATCH, DEFAULT_SAMPLE
from redis_runbook.errors import TargetUnavailable
from redis_runbook.keyspace import (
    OTHER,
    CategoryStats,
    KeyspaceStats,
    Progress,
    category_stats,
    dbsize,
)
from redis_runbook.keyspace_estimate import estimate
from redis_runbook.keyspace_purge import PurgeResult, purge, select_categories
from redis_runbook.procedures.context import ProcedureContext
from redis_runbook.procedures.engine import Confirm, Plan, Step
from redis_runbook.target import redis_errors
from redis_runbook.units import format_bytes

#: Above this many keys a plan estimates keys per category instead of walking them
#: (a walk of 250,000 keys takes about a second).
EXACT_WALK_MAX_KEYS = 250_000

LabelledProgress = Callable[[str, int, int | None], None]
"""Progress of a long walk: (label, done, total or None)."""

RESUME_HINT = (
    "redis-runbook keys stats   # what is left; re-running the purge deletes only the "
    "keys still there"
)


def labelled(progress: LabelledProgress | None, label: str) -> Progress | None:
    """A keyspace Progress callback that reports under `label`."""
    if progress is None:
        return None
    return lambda done, total: progress(label, done, total)


def require_answer(ctx: ProcedureContext) -> None:
    """Raise TargetUnavailable (nothing done) when Redis does not answer PING."""
    client = ctx.answering()
    if client is None:
        raise TargetUnavailable(
            f"{ctx.where} does not answer PING: there is no keyspace to purge",
            "redis-runbook health; if Redis was OOM-killed (dmesg | grep -i 'killed process'): "
            "redis-runbook recover restart",
        )
    client.close()


def confirmation(chosen: Sequence[Category]) -> tuple[Confirm, str]:
    """y/N for rebuildable categories; typing the names for any that is not."""
    critical = [c.name for c in chosen if not c.rebuildable]
    if critical:
        return Confirm.TYPED, ",".join(critical)
    return Confirm.YES_NO, "yes"


def measure_categories(
    ctx: ProcedureContext,
    sample: int = DEFAULT_SAMPLE,
    progress: LabelledProgress | None = None,
    label: str = "plan: keys per category",
) -> KeyspaceStats:
    """Keys per category and their memory, read-only: what a plan shows before
    anything is deleted. Counted in one SCAN walk (memory from `sample` keys per
    category) when the database holds at most EXACT_WALK_MAX_KEYS keys; above that,
    estimated from random keys with 95 % error bars (keyspace_estimate.py), so that
    a purge walks the keyspace once, to delete."""
    client = ctx.client(decode=False)
    categories = ctx.config.categories
    try:
        with redis_errors(ctx.where):
            total = dbsize(client)
            if total > EXACT_WALK_MAX_KEYS:
                return estimate(client, categories, total=total).to_stats(categories)
            return category_stats(
                client,
                categories,
                sample=sample,
                on_progress=labelled(progress, label),
                total=total,
            )
    finally:
        client.close()


def size_of(stats: CategoryStats) -> str:
    """`500,300 keys ≈ 61.7 MiB` (the memory only when some keys were measured);
    estimated counts with their error bars: `≈ 500,300 ± 12,100 keys ≈ 61.7 MiB`."""
    memory = f" ≈ {format_bytes(stats.estimated_bytes)}" if stats.sampled else ""
    if stats.keys_error:
        return f"≈ {stats.keys:,} ± {stats.keys_error:,} keys{memory}"
    return f"{stats.keys:,} keys{memory}"


def holders(stats: KeyspaceStats, leave_out: Sequence[str] = ()) -> str:
    """The categories that hold memory, the largest first: `other (no category):
    52,000 keys ≈ 61.7 MiB; session: ...`."""
    ranked = sorted(
        (s for s in stats.categories.values() if s.keys and s.name not in leave_out),
        key=lambda s: (s.estimated_bytes, s.keys),
        reverse=True,
    )
    names = {OTHER: f"{OTHER} (no category)"}
    return "; ".join(f"{names.get(s.name, s.name)}: {size_of(s)}" for s in ranked) or "no keys"


def category_notes(chosen: Sequence[Category], stats: KeyspaceStats | None = None) -> list[str]:
    """What each purged category is (with its keys and memory counted when the
    plan was made), and a warning for the non-rebuildable ones."""
    notes = []
    for c in chosen:
        size = f" {size_of(stats.get(c.name))} now," if stats is not None else ""
        if c.rebuildable:
            notes.append(
                f"purge {c.name} ({c.pattern}):{size} rebuildable, the application refills it"
            )
        else:
            notes.append(
                f"purge {c.name} ({c.pattern}):{size} DELETES DATA THAT IS NOT REBUILDABLE "
                f"(priority {c.priority}, persistence {c.persistence})"
            )
    return notes


def purge_step(
    ctx: ProcedureContext,
    category: Category,
    *,
    expected: Callable[[], int | None] = lambda: None,
    batch: int = DEFAULT_BATCH,
    max_ops_per_s: float | None = None,
    progress: LabelledProgress | None = None,
    planned: CategoryStats | None = None,
    on_result: Callable[[PurgeResult], None] = lambda _result: None,
) -> Step:
    """The destructive step that purges one (already allowed) category; its title
    gives the keys (and memory) `planned` counted when the plan was made;
    `on_result` hears what it deleted."""

    def action() -> str:
        """Delete the category's keys: SCAN MATCH + pipelined UNLINK."""
        client = ctx.client(decode=False)
        try:
            with redis_errors(ctx.where):
                result = purge(
                    client,
                    category,
                    categories=ctx.config.categories,
                    batch=batch,
                    max_ops_per_s=max_ops_per_s,
                    on_progress=labelled(progress, f"purge {category.name}"),
                    expected=expected(),
                    allow_not_rebuildable=True,
                    bullmq_prefixes=ctx.config.bullmq.prefixes,
                )
        finally:
            client.close()
        on_result(result)
        return result.describe()

    counted = f": {size_of(planned)}," if planned is not None else " keys"
    return Step(
        f"purge {category.name} ({category.pattern}){counted} with SCAN + pipelined UNLINK",
        action,
        destructive=True,
        on_failure=RESUME_HINT,
    )


def _known(keys: int) -> Callable[[], int | None]:
    """A progress total already counted when the plan was made."""
    return lambda: keys


@dataclass
class CountWitness:
    """DBSIZE before the purge and after it, against the keys the purge steps
    deleted (a Witness, O(1): the purge's own walk is the only one). What the
    application wrote or deleted meanwhile shows as the difference."""

    ctx: ProcedureContext
    deleted: list[PurgeResult] = field(default_factory=list)
    before: int | None = None
    recording = "count keys (DBSIZE)"
    comparing = "count keys again (DBSIZE) against what the purge deleted"

    def _dbsize(self) -> int:
        client = self.ctx.client(decode=False)
        try:
            with redis_errors(self.ctx.where):
                return dbsize(client)
        finally:
            client.close()

    def record(self) -> str:
        """The keys in the database before anything is deleted."""
        self.before = self._dbsize()
        return f"{self.before:,} keys"

    def compare(self) -> str:
        """The keys now against those before minus those deleted."""
        after = self._dbsize()
        before = self.before if self.before is not None else after
        deleted = sum(r.deleted for r in self.deleted)
        drift = after - (before - deleted)
        said = f"{after:,} keys now: {before:,} before, {deleted:,} deleted by the purge"
        if drift:
            said += f"; {drift:+,} written or deleted by the application meanwhile"
        return said


def plan_purge(
    ctx: ProcedureContext,
    names: Sequence[str] | None,
    allow_critical: Sequence[str] = (),
    *,
    batch: int = DEFAULT_BATCH,
    max_ops_per_s: float | None = None,
    progress: LabelledProgress | None = None,
    sample: int = DEFAULT_SAMPLE,
) -> Plan:
    """Build the purge plan: the keys (and sampled memory) of each category are
    counted now, so the plan says what each step will delete. Raises UnknownName /
    Refused / TargetUnavailable before anything is done."""
    chosen = select_categories(ctx.config.categories, names, allow_critical)
    require_answer(ctx)
    stats = measure_categories(ctx, sample, progress)
    witness = CountWitness(ctx)
    mode, word = confirmation(chosen)
    steps = []
    for category in chosen:
        planned = stats.get(category.name)
        steps.append(
            purge_step(
                ctx,
                category,
                expected=_known(planned.keys),
                batch=batch,
                max_ops_per_s=max_ops_per_s,
                progress=progress,
                planned=planned,
                on_result=witness.deleted.append,
            )
        )
    return Plan(
        procedure="keys purge",
        target=ctx.where,
        steps=steps,
        confirm=mode,
        confirm_word=word,
        data_loss=mode is Confirm.TYPED,
        witness=witness,
        notes=category_notes(chosen, stats),
    )
