"""redis-runbook: the executable runbook for Redis and BullMQ."""

__version__ = "0.1.0"
