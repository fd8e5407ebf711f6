"""Child processes die with the tool.

A tool killed mid-procedure (SIGKILL, the OOM killer) must not leave a child going
on alone: an orphaned `redis-check-aof --fix` would still cut the AOF after the
procedure that was to report the cut is gone. Every tool the runbook runs asks the
kernel for SIGKILL when its parent dies (Linux `PR_SET_PDEATHSIG`); servers the
process backend starts are not children of this kind: they must outlive the tool.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child get SIGKILL when this process dies
    (None where the platform has no such request)."""
    if _libc is None:
        return None
    prctl = _libc.prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
        if os.getppid() != parent:  # the parent died before the request was made
            os._exit(137)

    return preexec
