"""Deterministic BullMQ job ids from PostgreSQL rows: a template such as
`enrich-{id}` whose placeholders are column names of the source's query.

A re-run renders the same id for the same row, and BullMQ stores nothing for an
id whose job hash exists (bullmq.md §8), so reconstruction is idempotent. BullMQ
v5 refuses custom ids that contain `:` or are all digits; the Python port does not
check, so every rendered id is checked here before anything is sent.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass

from redis_runbook.bullmq.keys import invalid_job_id

MAX_TEMPLATE = 200
_COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SPEC = re.compile(r"[<>=^+\- 0-9,._a-zA-Z%#]*")


@dataclass(frozen=True)
class JobIdTemplate:
    """A parsed template: literal text and column placeholders (`{col}` or
    `{col:spec}` with a format spec such as `{id:08d}`)."""

    text: str
    columns: tuple[str, ...]
    positional: str

    @classmethod
    def parse(cls, text: str) -> JobIdTemplate:
        """Parse and check the template; raises ValueError saying what is wrong."""
        if not text:
            raise ValueError("expected a job id template such as 'enrich-{id}', got ''")
        if len(text) > MAX_TEMPLATE:
            raise ValueError(f"expected a template of at most {MAX_TEMPLATE} characters")
        columns: list[str] = []
        parts: list[str] = []
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise ValueError(f"job id template {text!r}: {exc}") from None
        for literal, field, spec, conversion in parsed:
            if ":" in literal:
                raise ValueError(
                    f"job id template {text!r} contains ':' (BullMQ v5 rejects it); "
                    f"use '-' instead: {text.replace(':', '-')!r}"
                )
            parts.append(literal.replace("{", "{{").replace("}", "}}"))
            if field is None:
                continue
            if not _COLUMN.fullmatch(field) or conversion is not None:
                raise ValueError(
                    f"job id template {text!r}: placeholder {{{field}}} must be a plain column "
                    "name such as {id}"
                )
            if spec and not _SPEC.fullmatch(spec):
                raise ValueError(f"job id template {text!r}: bad format spec {spec!r}")
            if field not in columns:
                columns.append(field)
            parts.append("{" + str(columns.index(field)) + (f":{spec}" if spec else "") + "}")
        if not columns:
            raise ValueError(
                f"job id template {text!r} has no {{column}} placeholder: every row would get "
                "the same id; use e.g. 'enrich-{id}'"
            )
        return cls(text, tuple(columns), "".join(parts))

    def render(self, values: Sequence[object]) -> str:
        """The id for one row, given the values of `columns` in order."""
        return self.positional.format(*values)


def check_job_id(job_id: str) -> str | None:
    """Why BullMQ v5 would refuse this rendered id, or None."""
    return invalid_job_id(job_id)
