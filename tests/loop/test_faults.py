"""loop/faults.py: a named kill point kills the process only when LOOPGATE_KILL_AT names it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def _run(kill_at: str) -> int:
    code = "from loopgate.loop.faults import kill_point\nkill_point('after-train')\nprint('went on')"
    env = {**os.environ, "LOOPGATE_KILL_AT": kill_at}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60).returncode


def test_the_named_point_kills_and_another_name_does_not() -> None:
    assert _run("after-train") == -signal.SIGKILL
    assert _run("before-release") == 0
