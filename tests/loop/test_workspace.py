"""loop/workspace.py: a workspace folder, who runs a command, and where the default workspace is."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopgate.errors import LoopgateError
from loopgate.loop.workspace import Workspace, current_user, default_workspace


def test_init_then_open_reads_the_same_ecosystem(tmp_path: Path) -> None:
    ws, _ = Workspace.init(tmp_path / "ws")
    again = Workspace.open(tmp_path / "ws")
    assert again.eco.name == ws.eco.name and again.root == ws.root
    ws.store.close()
    again.store.close()


def test_the_user_and_the_workspace_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPGATE_USER", "Alice")
    assert current_user() == "alice"  # identities compare case-insensitively
    monkeypatch.setenv("LOOPGATE_USER", "not a name!")
    with pytest.raises(LoopgateError):
        current_user()
    monkeypatch.setenv("LOOPGATE_WORKSPACE", "/srv/eco")
    assert default_workspace() == Path("/srv/eco")
