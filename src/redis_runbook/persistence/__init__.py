"""Redis' data files: where they are (layout), the AOF in both layouts (aof), the
offline `redis-check-aof` verdict (aof_check) and RDB headers and checks (rdb)."""

from redis_runbook.persistence.layout import DataLayout, PersistenceError

__all__ = ["DataLayout", "PersistenceError"]
