"""A local PostgreSQL for the lab, the tests and the benchmarks: `initdb` + `pg_ctl`
in a directory of its own, listening on 127.0.0.1 only, on a free port (never
5432), without a Unix socket.

PostgreSQL refuses to run as root. When we are root the server runs as the
`postgres` system user (Debian's package creates it), else as `nobody`, through
`setpriv` (util-linux). Its directory is owned by that user; when an ancestor of
the directory is not searchable by it (a lab under /root) the server gets
CAP_DAC_READ_SEARCH (where a container withholds it, CAP_DAC_OVERRIDE) as an
ambient capability instead of any directory being opened up. Tests and
benchmarks put their clusters in a fresh directory under /tmp and need neither.

Layout of `workdir` (mode 0700, owned by the server's user):
    data/            the cluster (initdb), with `include 'runbook.conf'`
    postgres.log     the server log (pg_ctl -l)

The superuser password is given to `initdb` through a 0600 file that is deleted
at once; it is never put on a command line.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import stat
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

from redis_runbook.errors import LabError
from redis_runbook.ports import free_port, port_free
from redis_runbook.service.process import pid_alive

SUPERUSER = "runbook"
DATABASE = "cerniq"
PG_TIMEOUT_S = 30.0
START_ATTEMPTS = 3
#: Capabilities that let the server through directories it cannot search, by
#: preference (bit numbers in /proc/self/status CapBnd). Docker's default set lacks
#: dac_read_search but has dac_override.
TRAVERSE_CAPS = (("dac_read_search", 2), ("dac_override", 1))
DEFAULT_SETTINGS: dict[str, str] = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "max_connections": "30",
    "shared_buffers": "64MB",
}
#: For throwaway clusters (tests, benchmarks): no fsync, nothing survives a crash.
FAST_SETTINGS: dict[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


def find_bindir() -> Path:
    """The directory of `initdb`/`pg_ctl`: from PATH, else the newest
    /usr/lib/postgresql/<version>/bin (Debian does not put them on PATH)."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    candidates = []
    for bindir in Path("/usr/lib/postgresql").glob("*/bin"):
        if (bindir / "initdb").is_file() and bindir.parent.name.isdigit():
            candidates.append((int(bindir.parent.name), bindir))
    if not candidates:
        raise LabError(
            "PostgreSQL server binaries (initdb, pg_ctl) not found",
            "apt-get install -y postgresql   # ./run installs it",
        )
    return max(candidates)[1]


@dataclass(frozen=True)
class RunAs:
    """The unprivileged user the server runs as when we are root."""

    name: str
    uid: int
    gid: int
    cap: str | None = None

    def argv(self) -> list[str]:
        """The `setpriv` prefix that drops to this user, keeping only `cap` (when
        the directory is out of its reach) as an ambient capability."""
        argv = ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups"]
        if self.cap:
            argv += [f"--inh-caps=+{self.cap}", f"--ambient-caps=+{self.cap}"]
        return [*argv, "--"]


def _traverse_cap(workdir: Path, user: str) -> str:
    """The capability to hand the server so it reaches `workdir`, or LabError."""
    try:
        status = Path("/proc/self/status").read_text()
        bounding = int(
            next(x for x in status.splitlines() if x.startswith("CapBnd:")).split()[1], 16
        )
    except (OSError, StopIteration, ValueError):
        bounding = 0
    for name, bit in TRAVERSE_CAPS:
        if bounding & (1 << bit):
            return name
    raise LabError(
        f"PostgreSQL runs as {user}, which cannot reach {workdir} (a parent directory is "
        "not searchable), and no capability to let it through is available",
        "use a lab directory under /tmp or /var/tmp: redis-runbook lab up --dir /var/tmp/rr-lab "
        "--with-postgres",
    )


def _searchable_by(path: Path, uid: int, gid: int) -> bool:
    """True when every directory from / down to `path` lets uid/gid through."""
    for directory in [*reversed(path.parents), path]:
        try:
            info = directory.stat()
        except OSError:
            return False
        if info.st_uid == uid:
            bit = stat.S_IXUSR
        elif info.st_gid == gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return False
    return True


def run_as_for(workdir: Path) -> RunAs | None:
    """None when we are not root (the server runs as us); else `postgres` (or
    `nobody` where it does not exist)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            reachable = _searchable_by(workdir.parent, entry.pw_uid, entry.pw_gid)
            cap = None if reachable else _traverse_cap(workdir, name)
            return RunAs(name, entry.pw_uid, entry.pw_gid, cap)
    raise LabError("no unprivileged user (postgres, nobody) to run PostgreSQL as")


class PostgresServer:
    """One PostgreSQL cluster in `workdir` (see the module docstring)."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.fixed_port = port is not None
        self.port = port if port is not None else saved_port(workdir)
        self.settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self.run_as = run_as_for(workdir)

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        return self.workdir / "data"

    @property
    def log_path(self) -> Path:
        """The server log."""
        return self.workdir / "postgres.log"

    def initialized(self) -> bool:
        """True once initdb has run here."""
        return (self.data_dir / "PG_VERSION").is_file()

    def pid(self) -> int | None:
        """The postmaster's pid (postmaster.pid) when it is alive."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def dsn(self, password: str, database: str = DATABASE) -> str:
        """A postgresql:// URL with the password in it: for a 0600 file only."""
        return (
            f"postgresql://{SUPERUSER}:{quote(password, safe='')}@127.0.0.1:{self.port}/{database}"
        )

    def create_database(self, password: str, name: str = DATABASE) -> bool:
        """CREATE DATABASE `name` unless it exists (the server must be running);
        True when it was created now."""
        try:
            with psycopg.connect(
                self.dsn(password, "postgres"), connect_timeout=10, autocommit=True
            ) as conn:
                exists = conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
                ).fetchone()
                if exists is None:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                return exists is None
        except psycopg.Error as exc:
            raise LabError(f"cannot create database {name}: {exc.sqlstate or 'error'}") from None

    def _chown(self, path: Path) -> None:
        if self.run_as is not None:
            os.chown(path, self.run_as.uid, self.run_as.gid)

    def _run(self, tool: str, *args: str, timeout: float = PG_TIMEOUT_S) -> str:
        argv = [*(self.run_as.argv() if self.run_as else []), str(find_bindir() / tool), *args]
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
            )
        except subprocess.TimeoutExpired:
            raise LabError(
                f"{tool} did not finish within {timeout:g} s", f"read {self.log_path}"
            ) from None
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
            raise LabError(
                f"{tool} exited with status {done.returncode}: {last[0]}",
                f"read {self.log_path}",
            )
        return done.stdout

    def init(self, password: str) -> None:
        """initdb with scram-sha-256 auth and superuser `runbook` (idempotent)."""
        if self.initialized():
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o700)
        self._chown(self.workdir)
        pwfile = self.workdir / ".initdb-password"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
        self._chown(pwfile)
        try:
            self._run(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude_if_exists = 'runbook.conf'\n")

    def _write_conf(self) -> None:
        assert self.port is not None
        lines = [f"{k} = {v}" for k, v in {**self.settings, "port": str(self.port)}.items()]
        path = self.data_dir / "runbook.conf"
        path.write_text(
            "# Written by redis-runbook: loopback only, no Unix socket.\n" + "\n".join(lines) + "\n"
        )
        path.chmod(0o600)
        self._chown(path)

    def start(self) -> None:
        """Start the cluster (pg_ctl start -w) on a free port, or on `port` when
        one was given; retries another free port if it was taken meanwhile."""
        if self.pid() is not None:
            return
        fixed = self.fixed_port
        for attempt in range(START_ATTEMPTS):
            if not fixed and (attempt or self.port is None or not port_free(self.port)):
                self.port = free_port()
                while self.port == 5432:
                    self.port = free_port()
            self._write_conf()
            if not self.log_path.exists():
                self.log_path.touch(mode=0o600)
                self._chown(self.log_path)
            try:
                self._run(
                    "pg_ctl",
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_path),
                    "-w",
                    "-t",
                    str(int(PG_TIMEOUT_S)),
                    "start",
                    timeout=PG_TIMEOUT_S + 5,
                )
                return
            except LabError:
                in_use = "Address already in use" in self._log_tail()
                if fixed or not in_use or attempt == START_ATTEMPTS - 1:
                    raise

    def stop(self) -> None:
        """pg_ctl stop -m fast (rolls back open transactions, checkpoints)."""
        if self.pid() is None:
            return
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-m",
            "fast",
            "-w",
            "-t",
            str(int(PG_TIMEOUT_S)),
            "stop",
            timeout=PG_TIMEOUT_S + 5,
        )

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-10:])
        except OSError:
            return ""


def saved_port(workdir: Path) -> int | None:
    """The port of an initialised cluster (from its runbook.conf), if any."""
    try:
        text = (workdir / "data" / "runbook.conf").read_text()
    except OSError:
        return None
    match = re.search(r"^port = (\d+)$", text, re.MULTILINE)
    return int(match.group(1)) if match else None
