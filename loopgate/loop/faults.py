"""Fault injection for the crash tests."""

from __future__ import annotations

import os
import signal


def kill_point(name: str) -> None:
    """``LOOPGATE_KILL_AT=name`` kills the process here (SIGKILL, no cleanup), exactly as an OOM-killer or a
    lost machine would; the crash tests use it to prove every step resumes."""
    if os.environ.get("LOOPGATE_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
