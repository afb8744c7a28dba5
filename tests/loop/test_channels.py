"""loop/channels.py: the verbs that move channels, and approving as an API token's identity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from decided import passing
from small_world import with_base

from loopgate.loop.channels import approve_as, promote
from loopgate.loop.rules import TwoPersonRuleError
from loopgate.store.tokens import TokenInfo, create_token, list_tokens


def _token(ws: Any, name: str, created_by: str) -> TokenInfo:
    create_token(ws.store, role="approver", name=name, actor=created_by)
    return next(t for t in list_tokens(ws.store) if t.name == name)


def test_a_token_made_by_the_requester_cannot_approve_their_release(workspace: Any, tiny_model_dir: Path) -> None:
    v = with_base(workspace, tiny_model_dir, actor="alice")
    passing(workspace.store, v, requester="bob")
    with pytest.raises(TwoPersonRuleError, match="created by bob"):
        approve_as(workspace, v, _token(workspace, "carol", created_by="bob"), "fine", [])
    assert workspace.store.approvals(v) == []


def test_promote_moves_a_channel_only_for_a_passing_decision(workspace: Any, tiny_model_dir: Path) -> None:
    v = with_base(workspace, tiny_model_dir)
    with pytest.raises(Exception, match="no passing decision"):
        promote(workspace, v, "staging", actor="ops")
    assert workspace.store.channel("base", "staging") is None
    passing(workspace.store, v)
    out = promote(workspace, v, "staging", actor="ops")
    assert [(m.channel, m.to_version) for m in out.moves] == [("staging", v)]
    assert workspace.store.channel("base", "staging") == v
