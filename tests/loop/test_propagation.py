"""loop/propagation.py: the wave starts from production only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from decided import release
from small_world import with_base

from loopgate.errors import LoopgateError
from loopgate.loop.propagation import propagate_from


def test_the_wave_starts_from_production_only(workspace: Any, tiny_model_dir: Path) -> None:
    v1, v2 = with_base(workspace, tiny_model_dir), with_base(workspace, tiny_model_dir)
    release(workspace.store, [("base", "production", v1)])
    before = len(workspace.store.ledger())
    with pytest.raises(LoopgateError, match="production only"):
        propagate_from(workspace, v2, actor="ci")
    assert len(workspace.store.ledger()) == before
