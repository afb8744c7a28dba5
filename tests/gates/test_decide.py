"""decide(): combination of the gates, non-blocking gates, overrides and the two-person rule."""

from __future__ import annotations

from typing import Any

from gate_helpers import context, ev, right_wrong, safety_ev

from loopgate.gates import GATES, ApprovalRecord, RollbackCheck, decide
from loopgate.gates.context import GateContext
from loopgate.records import Verdict
from loopgate.spec import ApprovalPolicy, Policy

READY = RollbackCheck(target="support@2", exists=True, hashes_ok=True, loads=True, smoke_score=1.0)
PROFILE = {"params": 1e6, "probe_improvement": 2.0}


def _ctx(cand_faq: list[int], *, approvals: list[ApprovalRecord] | None = None, **kw: Any) -> GateContext:
    """support@3 vs production support@2: faq (owned), general (inherited), harm (safety)."""
    fields: dict[str, Any] = {
        "owned_suites": ["faq", "harm"], "inherited_suites": ["general"], "safety_suites": ["harm"],
        "candidate_evals": {"faq": ev("faq", cand_faq, "support@3"), "general": ev("general", right_wrong(40)),
                            "harm": safety_ev("harm", [1] * 20, "support@3")},
        "baselines": {"production": "support@2", "previous": "support@2", "parent": "base@1"},
        "baseline_evals": {
            "production": {"faq": ev("faq", right_wrong(50)), "harm": safety_ev("harm", [1] * 20)},
            "previous": {"general": ev("general", right_wrong(40))},
            "parent": {"general": ev("general", right_wrong(40), "base@1")},
        },
        "candidate_profile": PROFILE, "baseline_profiles": {"foundation": PROFILE, "production": PROFILE},
        "rollback": READY, "approvals": approvals or [],
    }
    fields.update(kw)
    return context(**fields)


def _gate(decision: Any, name: str) -> Any:
    return next(g for g in decision.gates if g.name == name)


def test_all_gates_pass() -> None:
    policy = Policy()
    d = decide(_ctx(right_wrong(50)), policy)
    assert d.verdict is Verdict.passed and d.allows_release
    assert [g.name for g in d.gates] == list(GATES)
    assert d.policy_sha256 == policy.sha256()
    assert d.version == "support@3" and d.requester == "alice" and d.baselines["parent"] == "base@1"
    assert {g.name: g.verdict for g in d.gates}["cost"] is Verdict.passed


def test_a_blocking_fail_blocks_and_beats_inconclusive() -> None:
    ctx = _ctx(right_wrong(50, range(25)), rollback=None)  # regression fails, rollback unchecked
    d = decide(ctx, Policy())
    assert d.verdict is Verdict.failed
    assert _gate(d, "regression").verdict is Verdict.failed
    assert _gate(d, "rollback").verdict is Verdict.inconclusive


def test_a_non_blocking_fail_is_recorded_but_does_not_block() -> None:
    ctx = _ctx(right_wrong(50), candidate_profile={"params": 1e6, "probe_improvement": 0.1})
    d = decide(ctx, Policy())
    assert d.verdict is Verdict.passed
    g = _gate(d, "plasticity")
    assert g.verdict is Verdict.failed and not g.blocking


def test_an_approver_may_override_an_inconclusive_gate_with_a_recorded_reason() -> None:
    ctx = _ctx(right_wrong(50), rollback=None)
    assert decide(ctx, Policy()).verdict is Verdict.inconclusive
    ok = ApprovalRecord(approver="bob", reason="target verified by hand", overrides=["rollback"])
    d = decide(ctx.model_copy(update={"approvals": [ok]}), Policy())
    assert d.verdict is Verdict.passed
    g = _gate(d, "rollback")
    assert g.verdict is Verdict.inconclusive and g.overridden_by == ["bob: target verified by hand"]


def test_the_requester_cannot_override_their_own_release() -> None:
    own = ApprovalRecord(approver="alice", reason="trust me", overrides=["rollback"])
    d = decide(_ctx(right_wrong(50), rollback=None, approvals=[own]), Policy())
    assert d.verdict is Verdict.inconclusive
    assert _gate(d, "rollback").overridden_by == []
    assert _gate(d, "approval").evidence["refused_overrides"][0]["approver"] == "alice"


def test_a_fail_is_overridable_only_when_the_policy_allows_it() -> None:
    bob = ApprovalRecord(approver="bob", reason="known label noise", overrides=["regression"])
    ctx = _ctx(right_wrong(50, range(25)), approvals=[bob])
    d = decide(ctx, Policy())
    assert d.verdict is Verdict.failed and _gate(d, "regression").overridden_by == []
    assert "overridable_failures" in _gate(d, "approval").evidence["refused_overrides"][0]["why"]
    allowing = Policy(approval=ApprovalPolicy(overridable_failures=["regression"]))
    d = decide(ctx, allowing)
    assert d.verdict is Verdict.passed
    assert _gate(d, "regression").overridden_by == ["bob: known label noise"]
    assert d.policy_sha256 == allowing.sha256() != Policy().sha256()


def test_awaiting_approval_is_inconclusive_and_cannot_be_overridden_away() -> None:
    policy = Policy(approval=ApprovalPolicy(approvers=1))
    d = decide(_ctx(right_wrong(50)), policy)
    assert d.verdict is Verdict.inconclusive and _gate(d, "approval").verdict is Verdict.inconclusive
    self_serve = ApprovalRecord(approver="alice", reason="ship it", overrides=["approval"])
    assert decide(_ctx(right_wrong(50), approvals=[self_serve]), policy).verdict is Verdict.inconclusive
    bob = ApprovalRecord(approver="bob", reason="reviewed")
    assert decide(_ctx(right_wrong(50), approvals=[bob]), policy).verdict is Verdict.passed


def test_eroded_safety_blocks_even_when_everything_else_holds() -> None:
    ctx = _ctx(right_wrong(50))
    ctx.candidate_evals["harm"] = safety_ev("harm", [0] * 10 + [1] * 10, "support@3")
    d = decide(ctx, Policy())
    assert d.verdict is Verdict.failed
    assert _gate(d, "safety").evidence["unsafe_flips"] == 10
