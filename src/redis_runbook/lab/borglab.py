"""The lab's own Borg repository (repokey encryption), so that `backup create`,
`backup verify` and `recover restore` can be rehearsed end to end on the lab. Its
passphrase is a random one in a 0600 file; borg reads it through BORG_PASSCOMMAND
(a command naming the file), never from a command line or the environment."""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

from redis_runbook.errors import LabError

REPO_NAME = "borg-repo"
PASSPHRASE_NAME = "borg.passphrase"  # noqa: S105 (a file name, not a secret)


def ensure_repo(directory: Path) -> dict[str, Any] | None:
    """Create the lab's repository once; the `[backup]` section pointing at it, or None
    when borg is not installed (the lab works without it)."""
    if shutil.which("borg") is None:
        return None
    repo, passphrase = directory / REPO_NAME, directory / PASSPHRASE_NAME
    if not passphrase.exists():
        fd = os.open(passphrase, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(24) + "\n")
    if not repo.exists():
        env = {**os.environ, "BORG_PASSCOMMAND": f"cat {shlex.quote(str(passphrase))}"}
        env.pop("BORG_PASSPHRASE", None)
        done = subprocess.run(
            ["borg", "init", "--encryption=repokey", str(repo)],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise LabError(
                f"borg init {repo} failed: {reason}", "borg --version; ls -la " + str(directory)
            )
    return {"kind": "borg", "repository": str(repo), "passphrase_file": str(passphrase)}
