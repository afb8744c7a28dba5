"""loop/start.py: where an update of a line starts (production, else the latest registered version, else the
parent's production) and what it is built on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from decided import release
from small_world import with_base

from loopgate.errors import LoopgateError
from loopgate.loop.start import model_line, parent_production, start_point, start_version


def test_an_update_starts_from_production_else_the_latest_registered(workspace: Any, tiny_model_dir: Path) -> None:
    assert start_version(workspace, "base") is None
    assert start_point(workspace, "base", "sft").version is None
    v1, v2 = with_base(workspace, tiny_model_dir), with_base(workspace, tiny_model_dir)
    assert start_version(workspace, "base") == v2
    release(workspace.store, [("base", "production", v1)])
    assert start_version(workspace, "base") == v1
    assert start_version(workspace, "support") == v1  # a line with no version starts from its parent's production


def test_an_app_has_no_weights_and_a_child_needs_its_parent_in_production(workspace: Any,
                                                                         tiny_model_dir: Path) -> None:
    with pytest.raises(LoopgateError, match="is an app"):
        model_line(workspace, "helpdesk")
    spec = model_line(workspace, "support")
    with pytest.raises(LoopgateError, match="no production version"):
        parent_production(workspace, "support", spec)
    v = with_base(workspace, tiny_model_dir)
    release(workspace.store, [("base", "production", v)])
    assert parent_production(workspace, "support", spec) == v
    assert parent_production(workspace, "base", model_line(workspace, "base")) is None
