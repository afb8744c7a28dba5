"""``loopgate demo --quick`` on PostgreSQL, started in the background when the session starts.

The quick demo takes about three minutes of one core. The suite runs on one core of a 2-core machine, so the
PostgreSQL demo (issue 24: the demo on PostgreSQL, as a user runs it, through the console script) runs beside it
on the other core from the first test on, and ``tests/loop/test_demo_postgres.py`` waits for it and checks what it
told. Started only when that test is collected.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seed import SEED

TEST = "test_loopgate_demo_quick_tells_the_whole_story_on_postgresql"
LOOPGATE = shutil.which("loopgate", path=str(Path(sys.executable).parent)) or "loopgate"


@dataclass
class BackgroundDemo:
    proc: subprocess.Popen[bytes]
    root: Path  # the demo's workspace folder
    url: str  # its registry: a database of the session's PostgreSQL server
    out: Path
    err: Path

    def wait(self, timeout: float) -> tuple[int, str, str]:
        """(exit code, stdout, stderr) once the demo has finished."""
        code = self.proc.wait(timeout=timeout)
        return code, self.out.read_text(encoding="utf-8"), self.err.read_text(encoding="utf-8")


def start(server: Any, folder: Path) -> Iterator[BackgroundDemo]:
    """Run the quick demo against a fresh database of ``server`` until the session ends (killed if still running)."""
    with server.database() as url:
        out, err = folder / "demo.json", folder / "demo.err"
        with out.open("wb") as o, err.open("wb") as e:
            proc = subprocess.Popen(
                [LOOPGATE, "demo", "--quick", "--json", "--seed", str(SEED), "--workspace", str(folder / "demo")],
                stdout=o, stderr=e, env={**os.environ, "HF_HUB_OFFLINE": "1", "LOOPGATE_DATABASE_URL": url})
        try:
            yield BackgroundDemo(proc, folder / "demo", url, out, err)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
