"""The service contract: how redis-runbook controls the Redis server it diagnoses
and recovers. One backend per file (process, systemd, compose) behind this ABC.

Every method either does what it says or raises ServiceError naming the command
that failed; none of them waits without a deadline.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import redis

from redis_runbook.bgsave import SaveFailed, bgsave_and_wait, read_info, save_deadline
from redis_runbook.children import die_with_parent
from redis_runbook.config import TargetConfig
from redis_runbook.errors import RunbookError
from redis_runbook.inflight import holding
from redis_runbook.redislog import since_last_start
from redis_runbook.target import make_client, redis_cli_prefix

SAVE_FAILED_HINT = (
    "Redis is still running: find why it cannot save (redis-runbook diagnose: disk space, "
    "permissions); only if losing the writes since the last save is acceptable: "
    "redis-runbook recover restart --no-save"
)


#: How to run one of Redis' own programs (`redis-check-aof`, `redis-check-rdb`,
#: `redis-server`) of the service's version on files of the host: `(argv, paths the
#: program reads or writes) -> the command`. On the host, the argv itself.
Launcher = Callable[[list[str], Sequence[Path]], list[str]]


def on_host(argv: list[str], paths: Sequence[Path]) -> list[str]:
    """The host's own Redis programs (PATH)."""
    return argv


class ServiceError(RunbookError):
    """A service-manager command failed (start, stop, logs, a tool run)."""


class RunState(StrEnum):
    """What the service manager says about the server process."""

    RUNNING = "running"
    STOPPED = "stopped"  # exited, not started, or killed
    HUNG = "hung"  # process exists but is stopped (SIGSTOP) or a zombie
    UNKNOWN = "unknown"  # the manager itself could not be asked


@dataclass(frozen=True)
class ServiceState:
    """The server process as the manager sees it."""

    state: RunState
    pid: int | None = None
    detail: str = ""  # e.g. "Exited (137) 2 minutes ago", "inactive (dead)"
    exit_code: int | None = None


class Service(ABC):
    """Contract for controlling one Redis server.

    - `state()` never raises for a stopped server: it reports it.
    - `start()` returns once the manager has started the process; waiting until
      Redis answers is the caller's job (`wait.wait_ready`), with a deadline.
    - `stop(save)` stops the server and returns once the process is gone. With
      `save`, Redis writes its RDB first (SHUTDOWN SAVE or SAVE then stop); when
      that save fails, ServiceError says so and the server is left running.
    - `logs(tail)` returns the last `tail` lines of the server's own log plus what it
      printed on stderr/stdout (FATAL CONFIG FILE ERROR goes only there).
    - `run_tool(argv)` runs a Redis tool (`redis-check-aof`, `redis-check-rdb`) where
      the data lives: on the host, or in the container, with paths as the server
      sees them (`data_dir_in_service`).
    """

    #: The data directory on the host (what `dir` points at).
    data_dir: Path
    #: uid and gid that must own the data files.
    owner: tuple[int, int]

    @property
    def data_dir_in_service(self) -> Path:
        """`data_dir` as seen by `run_tool` (inside the container for compose)."""
        return self.data_dir

    @abstractmethod
    def describe(self) -> str:
        """One line naming the service, e.g. `compose service redis (docker-compose.yml)`."""

    @abstractmethod
    def state(self) -> ServiceState:
        """The server process' state."""

    @abstractmethod
    def start(self) -> None:
        """Start the server process."""

    @abstractmethod
    def stop(self, save: bool = True, timeout: float = 30.0) -> None:
        """Stop the server, saving first when `save`."""

    @abstractmethod
    def logs(self, tail: int = 200) -> list[str]:
        """The last `tail` log lines (server log and captured stderr)."""

    @abstractmethod
    def run_tool(
        self, argv: list[str], stdin: str | None = None, timeout: float = 300.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a Redis tool next to the data; returns the completed process."""

    def local_argv(self, argv: list[str], paths: Sequence[Path]) -> list[str]:
        """A Launcher: run the service's own `argv[0]` on host files under `paths`
        (a staged archive, a throwaway copy). The host's programs unless the
        service's are elsewhere (compose: the service's image)."""
        return on_host(argv, paths)

    def start_logs(self, tail: int = 200) -> list[str]:
        """The log lines of the latest start attempt (what explains a failed start)."""
        return since_last_start(self.logs(tail))

    def fence(self, timeout: float = 30.0) -> str:
        """Stop the server so that it acknowledges no more writes, without letting it
        run again first (a stopped, SIGSTOPped, process is killed, not continued),
        and so that no restart policy starts it again; the operator's sentence.
        The data files stay. ServiceError when the manager cannot do it."""
        self.stop(save=False, timeout=timeout)
        return f"{self.describe()} stopped"

    def restart(self, save: bool = True, timeout: float = 30.0) -> None:
        """Stop (saving when asked) then start."""
        self.stop(save=save, timeout=timeout)
        self.start()


def run_command(
    argv: list[str], *, stdin: str | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run a manager command (never through a shell); ServiceError when it cannot run."""
    try:
        return subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            errors="replace",  # tools echo key names, which may be any bytes
            timeout=timeout,
            check=False,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            preexec_fn=die_with_parent(),  # children die with the tool
        )
    except FileNotFoundError:
        raise ServiceError(
            f"{argv[0]} is not installed or not on PATH", f"install {argv[0]}"
        ) from None
    except subprocess.TimeoutExpired:
        raise ServiceError(f"{' '.join(argv[:3])} did not finish within {timeout:g} s") from None


def checked_command(argv: list[str], hint: str, timeout: float = 120.0) -> str:
    """Run a manager command; its stdout, or ServiceError naming the command, its exit
    status and its last line of complaint."""
    done = run_command(argv, timeout=timeout)
    if done.returncode != 0:
        reason = (done.stderr or done.stdout).strip().splitlines()
        raise ServiceError(
            f"{' '.join(argv)} failed (exit {done.returncode})"
            + (f": {reason[-1]}" if reason else ""),
            hint,
        )
    return done.stdout


@contextlib.contextmanager
def saved_for_stop(target: TargetConfig) -> Iterator[float]:
    """A BGSAVE of every write so far, waited for by polling (a blocking SAVE of a
    multi-GB dataset outlasts any command timeout), before a service manager stops
    Redis inside the block (SHUTDOWN would make a restart policy start it again).
    Yields the seconds the save took; ServiceError when it fails, Redis left running.

    With the AOF on, `save ""` is held while the manager stops Redis: its SIGTERM
    shutdown would otherwise write the whole dataset to the RDB a second time (at
    4 GiB, half of a restart), and every write after the BGSAVE is in the AOF,
    which the shutdown fsyncs and the next start loads. The next start reads its
    save points from its own configuration again; when the stop fails (Redis still
    runs) the previous value is put back at once. While it is held, the running
    plan's in-flight record has the command that puts it back: a tool killed in
    the stop leaves a Redis that still runs without save points, and the next
    command names that command."""
    with contextlib.ExitStack() as hold:
        client = make_client(target)
        began = time.monotonic()
        try:
            bgsave_and_wait(client, save_deadline(client), fresh=True)
            held = _save_points_to_hold(client)
            if held is not None:
                hold.enter_context(holding(_put_back_command(target, held)))
                client.config_set("save", "")
        except SaveFailed as exc:
            raise ServiceError(f"save before stopping: {exc.message}", SAVE_FAILED_HINT) from None
        except redis.RedisError as exc:
            raise ServiceError(f"save before stopping failed: {exc}", SAVE_FAILED_HINT) from None
        finally:
            client.close()
        try:
            yield time.monotonic() - began
        except BaseException:
            if held is not None:
                _put_back_save(target, held)
            raise


def _save_points_to_hold(client: redis.Redis) -> str | None:
    """The save points to hold off (`save ""`) for the stop: set ones, with the AOF on."""
    if read_info(client, "persistence").get("aof_enabled") != "1":
        return None
    reply: Any = client.config_get("save")
    return str(reply.get("save", "")) or None


def _put_back_command(target: TargetConfig, previous: str) -> str:
    """What an operator runs when the tool died while it held `save ""`."""
    cli = redis_cli_prefix(target)
    return (
        f'the save points were held off (save "") while the service manager stopped Redis; '
        f"if Redis still runs and {cli} CONFIG GET save shows them empty, put them back: "
        f'{cli} CONFIG SET save "{previous}"'
    )


def _put_back_save(target: TargetConfig, previous: str) -> None:
    """The save points held for a stop that failed (best effort: Redis may be gone)."""
    with contextlib.suppress(redis.RedisError), make_client(target) as client:
        client.config_set("save", previous)


def stop_grace(timeout: float, saved_in: float) -> float:
    """How long a manager lets Redis stop: `timeout`, or room for a final save as
    long as the one just made (twice it, plus half a minute; without the AOF the
    shutdown saves again)."""
    return max(timeout, 2 * saved_in + 30)


def parse_owner(owner: str) -> tuple[int, int]:
    """`999:999` to (999, 999)."""
    uid, gid = owner.split(":")
    return int(uid), int(gid)
