"""Resolve secrets from their configured source: an environment variable, a file,
or a command's stdout. Values are never logged, printed or put on a command line."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from redis_runbook.errors import SecretError

COMMAND_TIMEOUT_S = 10.0


def from_env(variable: str, key: str, env: Mapping[str, str] | None = None) -> str:
    """The value of `variable`; `key` names the config key for the error message."""
    value = (os.environ if env is None else env).get(variable)
    if not value:
        raise SecretError(
            f"{key}: environment variable {variable} is not set or empty",
            f"export {variable}=... (or use a *_file / *_command source instead)",
        )
    return value


def from_file(path: Path, key: str) -> str:
    """The first line of `path`, without its line ending."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SecretError(
            f"{key}: cannot read {path}: {exc.strerror}", f"check that {path} is readable"
        ) from None
    value = text.splitlines()[0] if text else ""
    if not value:
        raise SecretError(f"{key}: {path} is empty", f"write the secret into {path}")
    return value


def from_command(argv: Sequence[str], key: str) -> str:
    """The first line a command prints on stdout. Its stderr is not echoed: it may
    carry material from the secret store."""
    by_hand = f"run it by hand to see why: {shlex.join(argv)} >/dev/null"
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise SecretError(
            f"{key}: command not found: {argv[0]}", f"install {argv[0]} or fix {key}"
        ) from None
    except subprocess.TimeoutExpired:
        raise SecretError(
            f"{key}: {argv[0]} did not finish within {COMMAND_TIMEOUT_S:g} s", by_hand
        ) from None
    if done.returncode != 0:
        raise SecretError(f"{key}: {argv[0]} exited with status {done.returncode}", by_hand)
    value = done.stdout.splitlines()[0] if done.stdout else ""
    if not value:
        raise SecretError(f"{key}: {argv[0]} printed nothing on stdout", by_hand)
    return value


def resolve(
    section: str,
    *,
    env_var: str | None,
    file: Path | None,
    command: Sequence[str] | None,
    env: Mapping[str, str] | None = None,
    name: str = "password",
) -> str | None:
    """The secret from whichever source is configured, or None when none is; errors
    name the key `<section>.<name>_env|_file|_command`."""
    if env_var:
        return from_env(env_var, f"{section}.{name}_env", env)
    if file:
        return from_file(file, f"{section}.{name}_file")
    if command:
        return from_command(command, f"{section}.{name}_command")
    return None
