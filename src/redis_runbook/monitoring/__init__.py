"""Monitoring (seed §6): the monitor loop and its alerts, the Prometheus exporter, rules."""
