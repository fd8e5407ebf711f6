"""Drive the Node.js BullMQ v5 interop scripts (tests/interop/*.js) from tests.

Every script takes one JSON object as its config (argv[1]) and REDIS_URL from the
environment, and prints JSON lines on stdout. Two ways to run them:

- `run_node(script, args, redis_url=...)` for one-shot scripts (producer, counts, admin,
  seed52): waits for exit with a deadline and returns the parsed lines.
- `NodeProcess` for long-running ones (worker): a reader thread feeds each line into a
  queue; `wait_for(predicate, timeout)` waits with a deadline; `terminate()` (SIGTERM,
  graceful close) and `kill()` (SIGKILL, the crash drill) end it.

The `node` fixture (tests/conftest.py) yields a `NodeLauncher`, installs the npm packages
when they are missing, and kills every process it started at teardown.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from tests.support.paths import INTEROP_DIR

NODE_MODULES = INTEROP_DIR / "node_modules"
# Written by `./run` (ensure_interop) and by ensure_node_modules(): the sha256 of the
# package-lock.json that node_modules was installed from.
STAMP = NODE_MODULES / ".stamp"
NPM_CI_TIMEOUT = 100.0  # below the suite's pytest timeout (120 s), so our message wins
STDERR_TAIL = 40

Event = dict[str, Any]
Predicate = Callable[[Event], bool]


class NodeError(RuntimeError):
    """A Node script failed, could not start, or the npm install failed."""


class NodeTimeout(NodeError, TimeoutError):
    """A deadline passed while waiting on a Node script."""


def node_available() -> bool:
    """True when `node` (>= 18) and `npm` are on PATH."""
    node = shutil.which("node")
    if node is None or shutil.which("npm") is None:
        return False
    try:
        out = subprocess.run(
            [node, "-p", "process.versions.node"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    major = out.strip().split(".", 1)[0]
    return major.isdigit() and int(major) >= 18


def bullmq_version() -> str:
    """The bullmq version package-lock.json pins (what `meta.version` says after a Node
    Queue touched a queue: "bullmq:<this>")."""
    lock = json.loads((INTEROP_DIR / "package-lock.json").read_text())
    return str(lock["packages"]["node_modules/bullmq"]["version"])


def _lock_digest() -> str:
    return hashlib.sha256((INTEROP_DIR / "package-lock.json").read_bytes()).hexdigest()


def _install_lock_path() -> Path:
    """A lock file outside the work tree, one per checkout."""
    tag = hashlib.sha256(str(INTEROP_DIR).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"redis-runbook-npm-ci-{tag}.lock"


def ensure_node_modules(timeout: float = NPM_CI_TIMEOUT) -> None:
    """Run `npm ci` in tests/interop unless node_modules matches package-lock.json.

    Same contract as `./run`: node_modules/.stamp holds the lockfile's sha256. A file
    lock serialises concurrent pytest sessions. Raises NodeError with npm's output."""
    want = _lock_digest()
    hint = f"HINT: cd {INTEROP_DIR} && npm ci  (needs the npm registry, or ./run test)"
    if STAMP.is_file() and STAMP.read_text().strip() == want:
        return
    with open(_install_lock_path(), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if STAMP.is_file() and STAMP.read_text().strip() == want:
            return  # another session installed it while we waited
        try:
            done = subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=INTEROP_DIR,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise NodeError(f"npm ci in {INTEROP_DIR} failed: {exc}\n{hint}") from exc
        if done.returncode != 0:
            output = (done.stderr.strip() or done.stdout.strip())[-2000:]
            raise NodeError(f"npm ci in {INTEROP_DIR} exited {done.returncode}: {output}\n{hint}")
        STAMP.write_text(want + "\n")


def _script_path(script: str) -> Path:
    path = INTEROP_DIR / script
    if not path.is_file():
        known = sorted(p.name for p in INTEROP_DIR.glob("*.js"))
        raise NodeError(f"no interop script {script!r}; known: {', '.join(known)}")
    return path


def _env(redis_url: str, env: Mapping[str, str] | None) -> dict[str, str]:
    merged = dict(os.environ)
    merged.update(env or {})
    merged["REDIS_URL"] = redis_url
    return merged


def _parse(line: str) -> Event:
    """One stdout line as an event; a non-JSON line becomes {"event": "raw", "line": ...}."""
    try:
        value = json.loads(line)
    except ValueError:
        return {"event": "raw", "line": line}
    return value if isinstance(value, dict) else {"event": "raw", "line": line}


def run_node(
    script: str,
    args: Mapping[str, Any] | None = None,
    *,
    redis_url: str,
    timeout: float = 30.0,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> list[Event]:
    """Run a one-shot script to completion and return its JSON lines.

    Raises NodeTimeout past `timeout` (the process is killed) and, with `check`, NodeError
    when it exits non-zero (the message holds its stderr)."""
    path = _script_path(script)
    try:
        done = subprocess.run(
            ["node", str(path), json.dumps(dict(args or {}))],
            cwd=INTEROP_DIR,
            env=_env(redis_url, env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise NodeTimeout(f"{script} did not finish within {timeout:g} s") from exc
    if check and done.returncode != 0:
        raise NodeError(f"{script} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return [_parse(line) for line in done.stdout.splitlines() if line.strip()]


class NodeProcess:
    """A long-running interop script (e.g. worker.js) whose JSON lines are read on a
    background thread. `events` holds every line received so far, in order."""

    def __init__(
        self,
        script: str,
        args: Mapping[str, Any] | None = None,
        *,
        redis_url: str,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.script = script
        self.args = dict(args or {})
        self.events: list[Event] = []
        self._inbox: queue.Queue[Event | None] = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=STDERR_TAIL)
        self._eof = False
        self.process = subprocess.Popen(
            ["node", str(_script_path(script)), json.dumps(self.args)],
            cwd=INTEROP_DIR,
            env=_env(redis_url, env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self._threads = [
            threading.Thread(target=self._read_stdout, args=(self.process.stdout,), daemon=True),
            threading.Thread(target=self._read_stderr, args=(self.process.stderr,), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def __repr__(self) -> str:
        return f"NodeProcess({self.script}, pid={self.pid}, returncode={self.returncode})"

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        """None while running."""
        return self.process.poll()

    def _read_stdout(self, stream: IO[str]) -> None:
        for line in stream:
            if line.strip():
                self._inbox.put(_parse(line))
        self._inbox.put(None)  # end of output

    def _read_stderr(self, stream: IO[str]) -> None:
        for line in stream:
            self._stderr.append(line.rstrip("\n"))

    def stderr_tail(self) -> str:
        """The last lines the script wrote to stderr."""
        return "\n".join(self._stderr)

    def _pump(self, timeout: float) -> bool:
        """Move lines that arrived (waiting up to `timeout` for the first) into `events`.
        False once the output has ended and nothing is left."""
        if self._eof:
            return False
        try:
            item = self._inbox.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return True
        while True:
            if item is None:
                self._eof = True
                return False
            self.events.append(item)
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return True

    def poll(self) -> list[Event]:
        """Every event received so far (drains the reader's queue without waiting)."""
        self._pump(0.0)
        return list(self.events)

    def matching(self, predicate: Predicate) -> list[Event]:
        """The events received so far that satisfy `predicate`."""
        return [event for event in self.poll() if predicate(event)]

    def wait_count(
        self,
        predicate: Predicate,
        count: int,
        timeout: float = 10.0,
        *,
        what: str = "matching events",
    ) -> list[Event]:
        """Wait until `count` events (received since start) satisfy `predicate`; return all
        of them. Raises NodeTimeout after `timeout` s, NodeError if the process ends first."""
        deadline = time.monotonic() + timeout
        while True:
            found = [event for event in self.events if predicate(event)]
            if len(found) >= count:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NodeTimeout(
                    f"{self.script}: timed out after {timeout:g} s waiting for {what} "
                    f"({len(found)}/{count}); last events: {self.events[-5:]}; "
                    f"stderr: {self.stderr_tail()[-1000:]}"
                )
            if not self._pump(min(remaining, 0.25)):
                found = [event for event in self.events if predicate(event)]
                if len(found) >= count:
                    return found
                try:
                    rc: int | None = self.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    rc = None  # closed stdout but still running
                raise NodeError(
                    f"{self.script} ended its output (exit {rc}) before {what} "
                    f"({len(found)}/{count}); "
                    f"last events: {self.events[-5:]}; stderr: {self.stderr_tail()[-1000:]}"
                )

    def wait_for(
        self, predicate: Predicate, timeout: float = 10.0, *, what: str = "a matching event"
    ) -> Event:
        """The first event (received since start) that satisfies `predicate`, waiting up to
        `timeout` s for it. Raises NodeTimeout, or NodeError if the process ends first."""
        return self.wait_count(predicate, 1, timeout, what=what)[0]

    def wait_event(self, event: str, timeout: float = 10.0, **fields: Any) -> Event:
        """Wait for the first event named `event` whose fields equal `fields`
        (e.g. `wait_event("completed", jobId="order-0")`)."""

        def match(item: Event) -> bool:
            return item.get("event") == event and all(item.get(k) == v for k, v in fields.items())

        return self.wait_for(match, timeout, what=f"{event} {fields or ''}".strip())

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Wait for {"event": "ready"} (worker.js prints it once connected)."""
        self.wait_event("ready", timeout)

    def _stop(self, sig: signal.Signals, timeout: float) -> int:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)
        try:
            rc = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            rc = self.process.wait(timeout=10)
        for thread in self._threads:
            thread.join(timeout=5)
        while not self._eof:  # keep whatever the reader queued before EOF
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._eof = True
            else:
                self.events.append(item)
        return rc

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM (worker.js closes gracefully: it waits for running handlers); SIGKILL if
        it has not exited within `timeout`. Returns the exit status."""
        return self._stop(signal.SIGTERM, timeout)

    def kill(self, timeout: float = 10.0) -> int:
        """SIGKILL, the crash drill: no close, locks stay until their PX runs out."""
        return self._stop(signal.SIGKILL, timeout)


class NodeLauncher:
    """What the `node` fixture yields: starts scripts against one Redis URL or another,
    remembers every process and kills the leftovers in `cleanup()`."""

    def __init__(self) -> None:
        self.started: list[NodeProcess] = []

    def __call__(
        self,
        script: str,
        args: Mapping[str, Any] | None = None,
        *,
        redis_url: str,
        env: Mapping[str, str] | None = None,
    ) -> NodeProcess:
        """Start a long-running script (see NodeProcess)."""
        proc = NodeProcess(script, args, redis_url=redis_url, env=env)
        self.started.append(proc)
        return proc

    def run(
        self,
        script: str,
        args: Mapping[str, Any] | None = None,
        *,
        redis_url: str,
        timeout: float = 30.0,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> list[Event]:
        """Run a one-shot script (see run_node)."""
        return run_node(script, args, redis_url=redis_url, timeout=timeout, env=env, check=check)

    def cleanup(self) -> None:
        """SIGKILL every process still running (a test that wanted a graceful stop has
        already called terminate())."""
        for proc in self.started:
            if proc.returncode is None:
                with contextlib.suppress(Exception):
                    proc.kill()
