"""Typed errors. Every error carries a one-line message, a hint naming the next
command, and the exit code the CLI maps it to (DESIGN.md "Output and exit codes")."""

from __future__ import annotations

from redis_runbook.redaction import redact

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3


class RunbookError(Exception):
    """Root of every error the library raises on purpose."""

    exit_code = EXIT_FAILED
    default_hint = "redis-runbook --help"

    def __init__(self, message: str, hint: str | None = None) -> None:
        # Messages quote URLs (a mistyped one too): no password is ever kept in one.
        message = redact(message)
        super().__init__(message)
        self.message = message
        self.hint = redact(hint or self.default_hint)

    def __str__(self) -> str:
        return self.message


class ConfigError(RunbookError):
    """The configuration (file, environment or flags) is invalid; nothing was done."""

    exit_code = EXIT_USAGE
    default_hint = "redis-runbook config validate"

    def __init__(
        self, message: str, hint: str | None = None, problems: list[str] | None = None
    ) -> None:
        super().__init__(message, hint)
        self.problems = [redact(p) for p in problems] if problems else [self.message]


class SecretError(ConfigError):
    """A secret source (env var, file, command) could not produce a value."""

    # Not `config validate`: it checks the file, not the secret store, and says OK.
    default_hint = "check the secret source the error names (redis-runbook config show)"


class TargetUnavailable(RunbookError):
    """Redis could not be reached (refused, timeout, TLS failure)."""

    default_hint = (
        "is redis-server running? check the service (docker compose ps redis / systemctl "
        "status redis-server) and [target] url in: redis-runbook config show"
    )


class TLSMismatch(TargetUnavailable):
    """The server answers, but in the other protocol: TLS where [target] speaks plain
    Redis (redis://), or plain Redis where it speaks TLS (rediss://)."""

    default_hint = (
        "[target] url must match the port: rediss:// (with tls_ca, tls_cert/tls_key) for a "
        "TLS port, redis:// for a plain one; check it with: redis-runbook config show"
    )


class AuthFailed(RunbookError):
    """Redis rejected the credentials, or the ACL user lacks a needed permission."""

    default_hint = "check [target] username/password_* in the config: redis-runbook config show"


class LabError(RunbookError):
    """The sandbox Redis could not be started, seeded or stopped."""

    default_hint = "redis-runbook lab status"


class Refused(RunbookError):
    """An operation was refused as unsafe or unconfirmed; nothing was changed."""

    exit_code = EXIT_REFUSED


class UnknownName(RunbookError):
    """The user named something that does not exist (a category, a client id);
    nothing was done. The message lists what does exist."""

    exit_code = EXIT_USAGE


class ServerLoading(RunbookError):
    """Redis answers LOADING: it is still loading its dataset into memory."""

    default_hint = (
        "Redis is loading its data into memory: wait until it is done (redis-runbook health "
        "shows the progress), then run the command again"
    )


class ReadOnlyReplica(RunbookError):
    """Redis answers READONLY: the target is a replica, writes go to the master."""

    default_hint = (
        "this is a replica: point [target] url at the master (redis-runbook config show), "
        "or make a replica the master: redis-runbook failover"
    )


class ServerOutOfMemory(RunbookError):
    """Redis answers OOM: maxmemory is reached and the policy evicts nothing."""

    default_hint = "free memory or raise the limit: redis-runbook recover oom"
