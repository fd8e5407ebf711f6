"""The base of every configuration section."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config section: unknown keys are errors, not silently ignored; assignments
    are validated too (env overrides are applied by assignment)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
