"""The follow-up a data-replacing procedure prints about the BullMQ job schedulers
the configuration expects (`[[bullmq.expected_schedulers]]`): after an emergency start
or a restore of an older archive, the ones the application registered are gone until
it registers them again, and cron-like work silently stops."""

from __future__ import annotations

import redis

from redis_runbook.bullmq.schedulers import (
    MISSING_HINT,
    expected_of,
    missing_schedulers,
    missing_sentence,
)
from redis_runbook.procedures.context import ProcedureContext


def schedulers_follow_up(ctx: ProcedureContext) -> str | None:
    """One sentence naming the expected job schedulers missing now (and what brings
    them back), or saying they are all there; None when the config expects none.
    Never raises: a Redis that does not answer is said in the sentence."""
    expected = expected_of(ctx.config.bullmq.expected())
    if not expected:
        return None
    client = ctx.answering()
    if client is None:
        return (
            "the expected job schedulers were not checked (Redis does not answer): "
            "redis-runbook checklist daily once it does"
        )
    try:
        missing = missing_schedulers(client, expected)
    except redis.RedisError as exc:
        return (
            f"the expected job schedulers were not checked ({exc}): redis-runbook checklist daily"
        )
    finally:
        client.close()
    sentence = missing_sentence(missing, len(expected))
    return f"{sentence}: {MISSING_HINT}" if missing else sentence
