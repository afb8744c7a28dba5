"""One real run of the demo (``--quick``, seeded by ``LOOPGATE_TEST_SEED``) shared by the loop tests; each
test that changes the registry works on its own copy of the demo workspace."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from seed import SEED

from loopgate.demo import run_demo
from loopgate.loop.workspace import Workspace


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The result of ``loopgate demo --quick --seed $LOOPGATE_TEST_SEED`` (about 2–3 minutes on 2 cores)."""
    root = tmp_path_factory.mktemp("demo") / "ws"
    console = Console(file=open(root.parent / "demo.log", "w"), width=160)  # noqa: SIM115
    return run_demo(root, quick=True, console=console, seed=SEED)


@pytest.fixture
def ws_copy(demo: dict[str, Any], tmp_path: Path) -> Workspace:
    """A private copy of the finished demo workspace."""
    dest = tmp_path / "ws"
    shutil.copytree(demo["workspace"], dest, ignore=shutil.ignore_patterns("tampered", "report"))
    return Workspace.open(dest)
