"""loop/rules.py: who may do what, the same for every front end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from decided import passing
from small_world import with_base

from loopgate.errors import LoopgateError
from loopgate.loop.rules import (
    ALLOWED,
    RoleError,
    TwoPersonRuleError,
    check_approval,
    check_force,
    check_pin,
    may,
    rating_refusal,
    record_approval,
)
from loopgate.records import utcnow
from loopgate.store.gateway import RequestRecord
from loopgate.store.tokens import ROLES, TokenInfo, create_token, list_tokens


def _token(ws: Any, role: str, name: str) -> TokenInfo:
    create_token(ws.store, role=role, name=name, actor="admin")
    return next(t for t in list_tokens(ws.store) if t.name == name)


def test_an_admin_satisfies_every_role_and_a_viewer_only_viewer(workspace: Any) -> None:
    admin, viewer = _token(workspace, "admin", "root"), _token(workspace, "viewer", "vic")
    assert all(may(admin, role) for role in ALLOWED)
    assert [role for role in ALLOWED if may(viewer, role)] == ["viewer"]
    assert not may(None, "viewer")
    assert set(ALLOWED["viewer"]) == set(ROLES)


def test_only_an_admin_forces_a_rollback_and_only_with_a_reason() -> None:
    check_force("admin", "incident 12")
    with pytest.raises(TwoPersonRuleError):
        check_force("releaser", "incident 12")
    with pytest.raises(LoopgateError, match="reason"):
        check_force("admin", "  ")


def test_a_viewer_may_not_pin_and_a_pin_needs_a_reason() -> None:
    check_pin("releaser", "waiting for QA")
    check_pin("admin", "", unpin=True)
    with pytest.raises(RoleError):
        check_pin("viewer", "waiting for QA")
    with pytest.raises(LoopgateError, match="reason"):
        check_pin("releaser", "")


def test_the_author_and_the_requester_may_not_approve(workspace: Any, tiny_model_dir: Path) -> None:
    v = with_base(workspace, tiny_model_dir, actor="alice")
    with pytest.raises(LoopgateError, match="no decision"):
        check_approval(workspace, v, "carol", "looks right")
    passing(workspace.store, v, requester="bob")
    with pytest.raises(TwoPersonRuleError, match="created"):
        check_approval(workspace, v, "Alice", "looks right")  # the same identity, another spelling
    with pytest.raises(TwoPersonRuleError, match="requested"):
        check_approval(workspace, v, "bob", "looks right")
    with pytest.raises(TwoPersonRuleError, match="token"):
        check_approval(workspace, v, "carol", "looks right", token_created_by="bob")
    assert check_approval(workspace, v, "carol", "looks right").version == v


def test_an_approval_counts_once(workspace: Any, tiny_model_dir: Path) -> None:
    v = with_base(workspace, tiny_model_dir, actor="alice")
    passing(workspace.store, v, requester="bob")
    first = record_approval(workspace, v, "carol", "fine")
    again = record_approval(workspace, v, "carol", "fine, retried")
    assert first.id == again.id
    assert [a.approver for a in workspace.store.approvals(v)] == ["carol"]


def test_only_the_key_that_asked_rates_an_answer_of_its_own_app() -> None:
    req = RequestRecord(id="r1", app="helpdesk", line="support", version_id="support@1", channel="production",
                        shadow=False, user_hash=None, key_id=7, ok=True, error=None, latency_ms=1.0, prompt_tokens=1,
                        output_tokens=1, prompt=None, output=None, seed=None, created_at=utcnow())
    assert rating_refusal(req, "helpdesk", 7) is None
    assert rating_refusal(req, None, None) is None  # keys off: anyone may rate
    assert "not made with this key's app" in (rating_refusal(req, "billing-bot", 7) or "")
    assert "another API key" in (rating_refusal(req, "helpdesk", 8) or "")
