"""BullMQ (Node v5 data layout) on Redis: discovery, counts, stale-job recovery,
reconstruction from PostgreSQL. See shared reference bullmq.md."""
