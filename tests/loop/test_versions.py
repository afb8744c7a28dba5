"""loop/versions.py: registering a model directory, loadable weights, lineage across lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from small_world import with_base

from loopgate.errors import LoopgateError
from loopgate.loop.versions import model_dir, register_model, version_lineage


def test_registered_weights_load_back_and_lineage_crosses_lines(workspace: Any, tiny_model_dir: Path) -> None:
    base = with_base(workspace, tiny_model_dir)
    child = register_model(workspace, "support", tiny_model_dir, parent_version=base, actor="alice").id
    assert (model_dir(workspace, base) / "config.json").is_file()
    assert [(a.version, a.relation) for a in version_lineage(workspace, child).ancestors] == [(base, "parent")]
    assert child in [d.version for d in version_lineage(workspace, base).descendants]


def test_a_folder_with_no_model_is_refused(workspace: Any, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(LoopgateError):
        register_model(workspace, "base", tmp_path / "empty", actor="alice")
    assert workspace.store.versions("base") == []
