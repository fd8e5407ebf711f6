"""BorgBackup 1.x through its CLI (`--json`, `--log-json`), never its Python API.

The passphrase reaches borg only through BORG_PASSCOMMAND (a `passphrase_command`,
run by borg itself) or BORG_PASSPHRASE_FD (a pipe this process fills from
`passphrase_env` / `passphrase_file`); it is never on a command line, in the
environment of a child, or in any output. BORG_PASSPHRASE / BORG_PASSCOMMAND
inherited from the caller are dropped so that only the configured source counts.
Borg's exit codes (0 ok, 1 warning, 2 error, 128+N signal) and its JSON log lines
(`msgid` such as `Archive.DoesNotExist`, `PassphraseWrong`) become one-line errors.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from redis_runbook.backup.base import (
    METADATA_NAME,
    Archive,
    Backend,
    BackupCorrupt,
    BackupError,
    BackupUnavailable,
    dump_metadata,
    parse_time,
    unknown_archive,
)
from redis_runbook.children import die_with_parent
from redis_runbook.config import secrets
from redis_runbook.config.backup import BackupConfig
from redis_runbook.errors import RunbookError

SECRET_VARS = ("BORG_PASSPHRASE", "BORG_PASSCOMMAND", "BORG_PASSPHRASE_FD", "BORG_NEW_PASSPHRASE")
NO_PROMPTS = {
    "BORG_RELOCATED_REPO_ACCESS_IS_OK": "no",
    "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "no",
    "BORG_DISPLAY_PASSPHRASE": "no",
    "BORG_CHECK_I_KNOW_WHAT_I_AM_DOING": "NO",
    "BORG_DELETE_I_KNOW_WHAT_I_AM_DOING": "NO",
}
MAX_PASSPHRASE = 16 * 1024  # far below a pipe's buffer: the write never blocks
CORRUPT_IDS = ("Integrity", "ObjectNotFound", "CheckNeeded", "Decompression", "TAM")
CORRUPT_WORDS = ("checksum mismatch", "integrity", "corrupt", "damaged")
_VERSION = re.compile(r"\b(\d+)\.(\d+)\.(\d+)")
INIT_HINT = "borg init --encryption=repokey REPOSITORY   # or fix [backup] repository"


def log_messages(stderr: str) -> list[dict[str, Any]]:
    """Borg's `--log-json` lines (one JSON object per line); other lines are ignored."""
    found = []
    for line in stderr.splitlines():
        with contextlib.suppress(ValueError):
            item = json.loads(line)
            if isinstance(item, dict) and item.get("type") == "log_message":
                found.append(item)
    return found


class BorgBackend(Backend):
    """Archives in a Borg 1.x repository."""

    def __init__(self, config: BackupConfig, env: Mapping[str, str] | None = None) -> None:
        if not config.repository:
            raise BackupError("[backup] repository is not set", "set [backup] repository")
        self.config = config
        self.repository = config.repository
        self.location = config.repository
        self.base_env = dict(os.environ if env is None else env)
        self._version: str | None = None

    # --- running borg ---------------------------------------------------------------

    def version(self) -> str:
        """`borg --version` (e.g. `1.2.4`); BackupUnavailable when missing or 2.x."""
        if self._version is None:
            done = self._spawn(["--version"], with_secret=False, timeout=30)
            match = _VERSION.search(done.stdout + done.stderr)
            if done.returncode != 0 or match is None:
                raise BackupUnavailable(
                    f"{self.config.borg_binary} --version failed (exit {done.returncode})",
                    "install BorgBackup 1.2 or 1.4 (apt install borgbackup)",
                )
            if int(match.group(1)) != 1:
                raise BackupUnavailable(
                    f"borg {match.group(0)} is not supported: this tool speaks the borg 1.x CLI "
                    "(borg 2 renamed list/info to repo-list/repo-info and dropped '::')",
                    "install borg 1.4 next to it and set [backup] borg_binary to it",
                )
            self._version = match.group(0)
        return self._version

    def _passphrase(self) -> str | None:
        cfg = self.config
        if cfg.passphrase_env:
            return secrets.from_env(cfg.passphrase_env, "backup.passphrase_env", self.base_env)
        if cfg.passphrase_file:
            return secrets.from_file(cfg.passphrase_file, "backup.passphrase_file")
        return None

    def _spawn(
        self, args: list[str], *, with_secret: bool, timeout: float, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in self.base_env.items() if k not in SECRET_VARS}
        env.update(NO_PROMPTS)
        if self.config.rsh:
            env["BORG_RSH"] = self.config.rsh
        passphrase = self._passphrase() if with_secret else None
        if with_secret and self.config.passphrase_command:
            env["BORG_PASSCOMMAND"] = shlex.join(self.config.passphrase_command)
        read_fd: int | None = None
        if passphrase is not None:
            data = passphrase.encode()
            if len(data) > MAX_PASSPHRASE:
                raise BackupError("the borg passphrase is implausibly long (over 16 KiB)")
            read_fd, write_fd = os.pipe()
            try:
                os.write(write_fd, data)
            finally:
                os.close(write_fd)
            env["BORG_PASSPHRASE_FD"] = str(read_fd)
        try:
            return subprocess.run(
                [self.config.borg_binary, *args],
                cwd=cwd,
                env=env,
                pass_fds=(read_fd,) if read_fd is not None else (),
                capture_output=True,
                text=True,
                errors="replace",
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                check=False,
                preexec_fn=die_with_parent(),  # an orphaned borg would hold the repo lock
            )
        except FileNotFoundError:
            raise BackupUnavailable(
                f"borg is not installed ({self.config.borg_binary} not found on PATH)",
                "apt install borgbackup   # or set [backup] borg_binary",
            ) from None
        except subprocess.TimeoutExpired:
            raise BackupError(
                f"borg {args[0]} did not finish within {timeout:g} s",
                "raise [backup] timeout_seconds, or check the repository's host",
            ) from None
        finally:
            if read_fd is not None:
                os.close(read_fd)

    def _run(
        self, args: list[str], *, cwd: Path | None = None, archive: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        self.version()
        command = [args[0], "--log-json", "--lock-wait", str(self.config.lock_wait_seconds)]
        done = self._spawn(
            command + args[1:], with_secret=True, timeout=self.config.timeout_seconds, cwd=cwd
        )
        if done.returncode in (0, 1):  # 1: warnings (e.g. a file changed while read)
            return done
        raise self._error(args[0], done, archive)

    def _error(
        self, command: str, done: subprocess.CompletedProcess[str], archive: str | None
    ) -> RunbookError:
        errors = [
            m
            for m in log_messages(done.stderr)
            if m.get("levelname") in ("ERROR", "CRITICAL") or m.get("msgid")
        ]
        msgids = [str(m.get("msgid") or "") for m in errors]
        text = next(
            (str(m.get("message", "")).strip().splitlines()[0] for m in errors if m.get("message")),
            "",
        )
        if not text:
            plain = [line for line in done.stderr.splitlines() if line.strip()]
            text = plain[-1].strip() if plain else f"exit {done.returncode}"
        said = [str(m.get("message", "")) for m in log_messages(done.stderr)]
        if any("No space left on device" in m for m in said) or "No space left" in done.stderr:
            return BackupError(
                f"borg {command}: no space left on device for the repository {self.location}",
                f"free space where it lives (df -h {self.location}), or prune old archives "
                f"(borg prune --keep-daily 7 {self.location}), then retry",
            )
        if text == "Local Exception":  # the cause is the traceback's last line
            tail = [m.strip().splitlines()[-1] for m in said if "Traceback" in m and m.strip()]
            text = tail[-1] if tail else text
        if "Archive.DoesNotExist" in msgids and archive is not None:
            return unknown_archive(archive, [a.name for a in self.list()], self.location)
        if "PassphraseWrong" in msgids:
            return BackupError(
                f"wrong passphrase for the borg repository {self.location}",
                "check the secret that [backup] passphrase_env/_file/_command points at",
            )
        if "NoPassphraseFailure" in msgids or "PasscommandFailure" in msgids:
            return BackupError(
                f"borg got no passphrase for {self.location}: {text}",
                "set [backup] passphrase_env, passphrase_file or passphrase_command",
            )
        if any(i.startswith("Repository.") and "DoesNotExist" in i for i in msgids) or any(
            i == "Repository.InvalidRepository" for i in msgids
        ):
            return BackupError(f"no borg repository at {self.location}: {text}", INIT_HINT)
        if any(i == "LockTimeout" or i.startswith("Lock") for i in msgids):
            return BackupError(
                f"the borg repository {self.location} is locked by another borg process",
                f"wait and retry; if no borg runs: borg break-lock {self.location}",
            )
        lowered = text.lower()
        if any(k in i for i in msgids for k in CORRUPT_IDS) or any(
            w in lowered for w in CORRUPT_WORDS
        ):
            subject = f"archive {archive!r}" if archive else "the repository"
            return BackupCorrupt(
                f"{subject} in {self.location} is damaged: {text}",
                f"borg check --verify-data {self.location}   # then use another archive",
            )
        return BackupError(f"borg {command} failed (exit {done.returncode}): {text}")

    # --- the contract -----------------------------------------------------------------

    def create(self, name: str, files: Mapping[str, Path], metadata: Mapping[str, Any]) -> Archive:
        """Hard-link (or copy) the files into a staging directory next to a
        metadata.json, and `borg create` them from there with paths relative to it.
        The metadata also goes into the archive comment (braces doubled: borg expands
        `{placeholders}` in comments) so that `list` needs no extract."""
        with staged(files, metadata) as staging:
            entries = sorted(p.name for p in staging.iterdir())
            done = self._run(
                [
                    "create",
                    "--json",
                    "--comment",
                    dump_metadata(metadata).replace("{", "{{").replace("}", "}}"),
                    f"{self.repository}::{name}",
                    *entries,
                ],
                cwd=staging,
            )
        info = _json(done.stdout).get("archive", {})
        stats = info.get("stats", {}) if isinstance(info, dict) else {}
        when = parse_time(str(metadata.get("time", ""))) or parse_time(str(info.get("start", "")))
        size = stats.get("original_size") if isinstance(stats, dict) else None
        assert when is not None
        return Archive(name=name, time=when, size=_int(size), metadata=dict(metadata))

    def list(self) -> list[Archive]:
        """`borg list --json` with the archive comments (our metadata), oldest first."""
        done = self._run(
            [
                "list",
                "--json",
                "--glob-archives",
                self.config.archive_glob,
                "--format",
                "{name}{start}{comment}",
                self.repository,
            ]
        )
        archives = []
        for item in _json(done.stdout).get("archives", []):
            metadata = _json(str(item.get("comment") or "{}"))
            when = parse_time(str(metadata.get("time", ""))) or parse_time(
                str(item.get("start") or item.get("time") or "")
            )
            if when is None:
                continue
            size = _int(metadata.get("size"))
            archives.append(Archive(str(item["name"]), when, size, metadata))
        return sorted(archives, key=lambda a: (a.time, a.name))

    def extract(self, name: str, dest: Path) -> None:
        """`borg extract` into `dest` (borg writes into its working directory)."""
        self._run(["extract", f"{self.repository}::{name}"], cwd=dest, archive=name)

    def check(self, name: str) -> None:
        """`borg extract --dry-run`: reads, decrypts and verifies every chunk."""
        self._run(["extract", "--dry-run", f"{self.repository}::{name}"], archive=name)


@contextlib.contextmanager
def staged(files: Mapping[str, Path], metadata: Mapping[str, Any]) -> Iterator[Path]:
    """A temporary directory holding `files` at their archive paths (hard links where
    the filesystem allows, copies elsewhere) and metadata.json; removed afterwards."""
    staging = Path(tempfile.mkdtemp(prefix="redis-runbook-backup-"))
    try:
        for relative, source in files.items():
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, target)
            except OSError:
                shutil.copy2(source, target)
        (staging / METADATA_NAME).write_text(dump_metadata(metadata) + "\n")
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _json(text: str) -> dict[str, Any]:
    try:
        loaded = json.loads(text)
    except ValueError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
