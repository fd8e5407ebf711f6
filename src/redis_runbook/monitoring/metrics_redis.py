"""Redis metrics from one Snapshot, under the names of oliver006/redis_exporter so that
its dashboards and alert rules work unchanged (docs/monitoring.md, redis-ops.md §1).

Fields are read by name; a field the server does not report is left out and one a
newer Redis adds is ignored. Status strings become numbers (`ok` 1, anything else 0)
and are always emitted, never dropped when they turn `err`."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from redis_runbook.replies import error_counts, keyspace, number, parse_pairs
from redis_runbook.snapshot import Snapshot

#: INFO field -> (metric name, help). Counters end in `_total`.
GAUGES: dict[str, tuple[str, str]] = {
    "uptime_in_seconds": ("redis_uptime_in_seconds", "Seconds since the server started."),
    "used_memory": ("redis_memory_used_bytes", "Memory allocated by Redis."),
    "used_memory_rss": ("redis_memory_used_rss_bytes", "Resident set size of the process."),
    "used_memory_peak": ("redis_memory_used_peak_bytes", "Peak memory allocated by Redis."),
    "maxmemory": ("redis_memory_max_bytes", "maxmemory (0 = no limit)."),
    "mem_fragmentation_ratio": ("redis_mem_fragmentation_ratio", "RSS / used memory."),
    "mem_fragmentation_bytes": ("redis_mem_fragmentation_bytes", "RSS minus used memory."),
    "connected_clients": ("redis_connected_clients", "Client connections."),
    "blocked_clients": ("redis_blocked_clients", "Clients in a blocking call."),
    "maxclients": ("redis_max_clients", "maxclients."),
    "instantaneous_ops_per_sec": ("redis_instantaneous_ops_per_sec", "Commands per second."),
    "total_error_replies": ("redis_total_error_replies", "Error replies sent."),
    "loading": ("redis_loading_dump_file", "1 while the dataset loads."),
    "rdb_changes_since_last_save": ("redis_rdb_changes_since_last_save", "Writes since a save."),
    "rdb_bgsave_in_progress": ("redis_rdb_bgsave_in_progress", "1 during BGSAVE."),
    "rdb_last_save_time": ("redis_rdb_last_save_timestamp_seconds", "Last successful save."),
    "rdb_last_bgsave_time_sec": ("redis_rdb_last_bgsave_duration_sec", "Last BGSAVE duration."),
    "aof_enabled": ("redis_aof_enabled", "1 when appendonly is on."),
    "aof_rewrite_in_progress": ("redis_aof_rewrite_in_progress", "1 during a rewrite."),
    "aof_current_size": ("redis_aof_current_size_bytes", "AOF size."),
    "aof_base_size": ("redis_aof_base_size_bytes", "AOF size at the last rewrite."),
    "aof_last_rewrite_time_sec": ("redis_aof_last_rewrite_duration_sec", "Last rewrite time."),
    "aof_delayed_fsync": ("redis_aof_delayed_fsync", "Delayed fsyncs."),
    "aof_pending_bio_fsync": ("redis_aof_pending_bio_fsync", "Pending background fsyncs."),
    "connected_slaves": ("redis_connected_slaves", "Connected replicas."),
    "master_repl_offset": ("redis_master_repl_offset", "Replication offset."),
}
COUNTERS: dict[str, tuple[str, str]] = {
    "rejected_connections": ("redis_rejected_connections_total", "Connections refused."),
    "total_connections_received": ("redis_connections_received_total", "Connections accepted."),
    "evicted_keys": ("redis_evicted_keys_total", "Keys evicted by maxmemory."),
    "expired_keys": ("redis_expired_keys_total", "Keys expired."),
    "keyspace_hits": ("redis_keyspace_hits_total", "Successful key lookups."),
    "keyspace_misses": ("redis_keyspace_misses_total", "Failed key lookups."),
    "total_commands_processed": ("redis_commands_processed_total", "Commands processed."),
    "total_net_input_bytes": ("redis_net_input_bytes_total", "Bytes received."),
    "total_net_output_bytes": ("redis_net_output_bytes_total", "Bytes sent."),
    "rdb_saves": ("redis_rdb_saves_total", "RDB saves since start."),
}
STATUSES: dict[str, tuple[str, str]] = {
    "rdb_last_bgsave_status": ("redis_rdb_last_bgsave_status", "Last BGSAVE: 1 ok, 0 err."),
    "aof_last_write_status": ("redis_aof_last_write_status", "Last AOF write: 1 ok, 0 err."),
    "aof_last_bgrewrite_status": ("redis_aof_last_bgrewrite_status", "Last rewrite: 1 ok, 0 err."),
}
INSTANCE_LABELS = (
    "role", "redis_version", "redis_mode", "os", "maxmemory_policy", "tcp_port", "run_id",
    "process_id",
)  # fmt: skip
SLAVE_LABELS = ["slave_ip", "slave_port", "slave_state"]
MASTER_LABELS = ["master_host", "master_port"]


def _scalars(info: dict[str, str]) -> Iterator[Metric]:
    for table, family in ((GAUGES, GaugeMetricFamily), (COUNTERS, CounterMetricFamily)):
        for field, (name, doc) in table.items():
            value = number(info, field)
            if value is not None:
                yield family(name, doc, value=value)
    for field, (name, doc) in STATUSES.items():
        if field in info:
            yield GaugeMetricFamily(name, doc, value=1.0 if info[field] == "ok" else 0.0)


def _instance(info: dict[str, str]) -> Iterator[Metric]:
    labels = list(INSTANCE_LABELS)
    family = GaugeMetricFamily("redis_instance_info", "Server identity.", labels=labels)
    family.add_metric([info.get(label, "") for label in labels], 1.0)
    yield family
    uptime, now = number(info, "uptime_in_seconds"), number(info, "server_time_usec")
    if uptime is not None and now is not None:
        start = GaugeMetricFamily("redis_start_time_seconds", "When the server started.")
        start.add_metric([], round(now / 1e6 - uptime))
        yield start


def _keyspace(info: dict[str, str]) -> Iterator[Metric]:
    keys = GaugeMetricFamily("redis_db_keys", "Keys per database.", labels=["db"])
    expiring = GaugeMetricFamily("redis_db_keys_expiring", "Keys with a TTL.", labels=["db"])
    ttl = GaugeMetricFamily("redis_db_avg_ttl_seconds", "Average TTL.", labels=["db"])
    for db in keyspace(info):
        label = [f"db{db.db}"]
        keys.add_metric(label, db.keys)
        expiring.add_metric(label, db.expires)
        ttl.add_metric(label, db.avg_ttl_ms / 1000)
    yield from (keys, expiring, ttl)


def _errors(info: dict[str, str]) -> Iterator[Metric]:
    family = CounterMetricFamily("redis_errors_total", "Error replies by prefix.", labels=["err"])
    for prefix, count in sorted(error_counts(info).items()):
        family.add_metric([prefix], count)
    yield family


def _replication(info: dict[str, str]) -> Iterator[Metric]:
    lag = GaugeMetricFamily(
        "redis_connected_slave_lag_seconds", "Replica lag.", labels=SLAVE_LABELS
    )
    offset = GaugeMetricFamily(
        "redis_connected_slave_offset_bytes", "Replica offset.", labels=SLAVE_LABELS
    )
    for field, text in info.items():
        if field.startswith("slave") and field[5:].isdigit():
            pairs = parse_pairs(text)
            labels = [pairs.get("ip", ""), pairs.get("port", ""), pairs.get("state", "")]
            lag.add_metric(labels, float(pairs.get("lag", 0)))
            offset.add_metric(labels, float(pairs.get("offset", 0)))
    yield from (lag, offset)
    if info.get("role") != "slave":
        return
    labels = [info.get("master_host", ""), info.get("master_port", "")]
    link = GaugeMetricFamily("redis_master_link_up", "Link to the master.", labels=MASTER_LABELS)
    link.add_metric(labels, 1.0 if info.get("master_link_status") == "up" else 0.0)
    yield link
    for field, name in (
        ("master_last_io_seconds_ago", "redis_master_last_io_seconds_ago"),
        ("slave_repl_offset", "redis_slave_repl_offset"),
    ):
        value = number(info, field)
        if value is not None:
            family = GaugeMetricFamily(name, field.replace("_", " ") + ".", labels=MASTER_LABELS)
            family.add_metric(labels, value)
            yield family


def _commands(snapshot: Snapshot) -> Iterator[Metric]:
    maxmemory = snapshot.config.get("maxmemory")
    if maxmemory is not None and maxmemory.isdigit():
        yield GaugeMetricFamily("redis_config_maxmemory", "CONFIG maxmemory.", value=int(maxmemory))
    if snapshot.slowlog_len is not None:
        yield GaugeMetricFamily(
            "redis_slowlog_length", "SLOWLOG LEN.", value=float(snapshot.slowlog_len)
        )
    last = GaugeMetricFamily(
        "redis_latency_spike_last", "Latest spike time.", labels=["event_name"]
    )
    duration = GaugeMetricFamily(
        "redis_latency_spike_duration_seconds", "Latest spike length.", labels=["event_name"]
    )
    for event in snapshot.latency_events:
        last.add_metric([event.event], event.at)
        duration.add_metric([event.event], event.latest_ms / 1000)
    yield from (last, duration)


def redis_metrics(snapshot: Snapshot) -> Iterator[Metric]:
    """Every core metric the snapshot supports (none when the server was not reached)."""
    if not snapshot.reachable or not snapshot.info:
        return
    info = snapshot.info
    yield from _scalars(info)
    yield from _instance(info)
    yield from _keyspace(info)
    yield from _errors(info)
    yield from _replication(info)
    yield from _commands(snapshot)
