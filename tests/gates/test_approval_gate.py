"""Approval gate: per-tier number of approvers; the requester never counts (two-person rule)."""

from __future__ import annotations

from gate_helpers import context

from loopgate.gates import ApprovalRecord, approval
from loopgate.records import Verdict
from loopgate.spec import ApprovalPolicy


def test_no_approval_required_passes() -> None:
    assert approval(context(), ApprovalPolicy()).verdict is Verdict.passed


def test_the_requester_cannot_approve_their_own_release() -> None:
    r = approval(context(approvals=[ApprovalRecord(approver="alice", reason="looks fine")]),
                 ApprovalPolicy(approvers=1))
    assert r.verdict is Verdict.inconclusive and "awaiting approval" in r.summary
    assert r.evidence["refused_self_approvals"] == ["alice"] and r.evidence["approvers"] == []


def test_another_approver_passes() -> None:
    r = approval(context(approvals=[ApprovalRecord(approver="bob", reason="checked the flips")]),
                 ApprovalPolicy(approvers=1))
    assert r.verdict is Verdict.passed and r.evidence["reasons"] == {"bob": "checked the flips"}


def test_the_same_approver_twice_counts_once() -> None:
    approvals = [ApprovalRecord(approver="bob", reason="a"), ApprovalRecord(approver="bob", reason="b")]
    r = approval(context(approvals=approvals), ApprovalPolicy(approvers=2))
    assert r.verdict is Verdict.inconclusive and "1/2" in r.summary
    approvals.append(ApprovalRecord(approver="carol", reason="c"))
    assert approval(context(approvals=approvals), ApprovalPolicy(approvers=2)).verdict is Verdict.passed
