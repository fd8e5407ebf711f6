"""Defaults and names that the command line declares its options with. They live
here, importing nothing, so that `redis-runbook --help` builds every command without
loading the library (redis, pydantic); the modules that use them import them from
here."""

from __future__ import annotations

from typing import Literal

#: Keys per category measured with MEMORY USAGE / PTTL (keyspace.py).
DEFAULT_SAMPLE = 500
#: Random keys `keys stats --estimate` draws (keyspace_estimate.py).
DEFAULT_RANDOM_KEYS = 2_000
#: Keys per UNLINK of a purge (keyspace_purge.py).
DEFAULT_BATCH = 500
#: Active job ids examined per script call of `queues recover-stale` (bullmq/stale.py).
STALE_BATCH = 500
#: The job name of `workers verify`'s canary; processors skip it (bullmq/verify.py).
CANARY_JOB = "__runbook_canary__"

#: `failover --reconcile` reconstructs the rows created from this long before the
#: switch on (clocks, replication lag) (procedures/reconcile.py).
RECONCILE_MARGIN_S = 300

Period = Literal["daily", "weekly", "monthly"]
#: The prevention checklists of seed §6.4 (checklist.py).
PERIODS: tuple[Period, ...] = ("daily", "weekly", "monthly")
