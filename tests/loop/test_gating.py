"""loop/gating.py: what a candidate is compared with, and which decisions may still move a channel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from decided import passing, release
from small_world import with_base

from loopgate.loop.gating import baselines_for, bound_approvals, fresh_decisions


def test_a_candidate_is_compared_with_what_shipped(workspace: Any, tiny_model_dir: Path) -> None:
    v1, v2, v3 = (with_base(workspace, tiny_model_dir) for _ in range(3))
    first = baselines_for(workspace, "base", built_from=None, parent_version=None, candidate=v1)
    assert first["production"] is None
    release(workspace.store, [("base", "production", v1)])
    passing(workspace.store, v2)  # decided but never shipped: it judges nobody
    second = baselines_for(workspace, "base", built_from=v2, parent_version=None, candidate=v3)
    assert second["production"] == v1
    assert v2 not in second.values()


def test_a_rollback_makes_earlier_decisions_and_their_approvals_stale(workspace: Any,
                                                                      tiny_model_dir: Path) -> None:
    v1, v2 = with_base(workspace, tiny_model_dir), with_base(workspace, tiny_model_dir)
    assert fresh_decisions(workspace, v2) == []
    release(workspace.store, [("base", "production", v1)])
    ids = passing(workspace.store, v2, requester="bob")
    workspace.store.add_approval(v2, "carol", "fine", decision_id=ids[v2])
    assert [d.id for d in fresh_decisions(workspace, v2)] == [ids[v2]]
    assert [a.approver for a in bound_approvals(workspace, v2)] == ["carol"]
    workspace.store.move_channels([("base", "production", v2)], kind="release", reason="test", actor="test",
                                  decision_ids=ids)
    workspace.store.move_channels([("base", "production", v1)], kind="rollback", reason="incident", actor="test")
    assert fresh_decisions(workspace, v2) == []  # v2 ships again only through a new decision
    assert bound_approvals(workspace, v2) == []
