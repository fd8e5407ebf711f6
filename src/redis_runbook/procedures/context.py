"""What every procedure works with: the config, the service, clients, the runner."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis

from redis_runbook.config import Config
from redis_runbook.journal import Journal
from redis_runbook.locks import refuse_if_locked
from redis_runbook.procedures.engine import Runner
from redis_runbook.service import Service, make_service
from redis_runbook.target import make_client, target_display


@dataclass
class ProcedureContext:
    """A target, how to control it, and where to journal and lock."""

    config: Config
    # A read-only report (clients list) may run beside a procedure; anything that
    # plans a change is refused at once while another procedure holds the target.
    read_only: bool = False
    service: Service = field(init=False)

    def __post_init__(self) -> None:
        self.service = make_service(self.config)
        if not self.read_only:
            refuse_if_locked(self.config.runbook.state_dir / "locks", self.where)

    @property
    def where(self) -> str:
        """The target URL, redacted."""
        return target_display(self.config.target)

    def client(self, decode: bool = True) -> redis.Redis:
        """A new client of the target (the caller closes it)."""
        return make_client(self.config.target, decode=decode)

    def answering(self) -> redis.Redis | None:
        """A client when Redis answers PING now, else None."""
        client = self.client()
        try:
            client.execute_command("PING")
        except redis.RedisError:
            client.close()
            return None
        return client

    def runner(self) -> Runner:
        """A Runner journaling to, and locking in, the configured state dir."""
        state = self.config.runbook.state_dir
        return Runner(
            journal=Journal.in_dir(state),
            lock_dir=state / "locks",
            lock_client=self.answering,
            lock_ttl_s=self.config.runbook.lock_ttl_seconds,
            state_dir=state,
        )
