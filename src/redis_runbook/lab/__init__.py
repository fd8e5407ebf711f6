"""The lab: a sandbox Redis configured like production, started from PATH in a
state directory of its own, with a config file that points the tool at it."""

from redis_runbook.lab.lifecycle import LabStatus, down, state_dir, status, up

__all__ = ["LabStatus", "down", "state_dir", "status", "up"]
