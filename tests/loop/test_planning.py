"""loop/planning.py: the wave a new version would start, line by line, before anything runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from small_world import with_base

from loopgate.loop.planning import plan


def test_the_plan_names_every_descendant_and_runs_nothing(workspace: Any, tiny_model_dir: Path) -> None:
    v = with_base(workspace, tiny_model_dir)
    before = len(workspace.store.ledger())
    steps = {s.line: s for s in plan(workspace, v)}
    assert list(steps) == ["support", "billing", "helpdesk"]
    assert "nothing to re-derive" in steps["support"].action  # no production version yet
    assert steps["helpdesk"].action == "follows support/production"
    assert len(workspace.store.ledger()) == before
