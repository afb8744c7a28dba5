"""Each gate's evidence is its own typed record, stored exactly as the dict the gates recorded before the records
existed: a decision written to the registry reads back, goes through its gates' models and comes out equal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from gate_helpers import context, ev, right_wrong, safety_ev

from loopgate.gates.context import ApprovalRecord, RollbackCheck
from loopgate.gates.evidence import (
    EVIDENCE,
    ApprovalEvidence,
    CostEvidence,
    InheritanceEvidence,
    PlasticityEvidence,
    RegressionEvidence,
    RollbackEvidence,
    SafetyEvidence,
    evidence_of,
)
from loopgate.gates.margin import gate_margin
from loopgate.gates.policy import decide
from loopgate.records import Baselines, Decision, Provenance, ServingCost, Verdict
from loopgate.spec import Policy
from loopgate.store import Store

POLICY = Policy.model_validate({
    "cost": {"max_latency_p95_ratio": 1.5, "max_mean_output_length": 50, "max_param_growth": 0.1},
    "approval": {"approvers": 1}})


def _busy_decision() -> Decision:
    """A decision in which every gate found something: a regression, an inherited drop, unsafe flips, a cost
    over budget, a drifted rollback target, low plasticity, an approval and refused overrides."""
    cand = "support@3"
    ctx = context(
        owned_suites=["qa"], inherited_suites=["core"], safety_suites=["harm"],
        candidate_evals={"qa": ev("qa", right_wrong(40, range(12)), cand),
                         "core": ev("core", right_wrong(40, range(12)), cand),
                         "harm": safety_ev("harm", [1] * 12 + [0] * 8, cand)},
        baselines={"production": "support@2", "previous": "support@2", "parent": "base@1"},
        baseline_evals={"production": {"qa": ev("qa", right_wrong(40)), "harm": safety_ev("harm", [1] * 20)},
                        "previous": {"core": ev("core", right_wrong(40))},
                        "parent": {"core": ev("core", right_wrong(40), "base@1")}},
        serving={"qa": ServingCost(suite="qa", rows=4, rounds=2, candidate={"ms_per_token": 3.0},
                                   baseline={"ms_per_token": 1.0})},
        candidate_profile={"params": 150.0, "probe_improvement": 0.1, "dormant_ratio": 0.3},
        baseline_profiles={"production": {"params": 100.0}, "foundation": {"probe_improvement": 0.5}},
        rollback=RollbackCheck(target="support@2", exists=True, hashes_ok=True, loads=True, smoke_suite="qa",
                               smoke_score=0.5, recorded_smoke_score=0.9),
        approvals=[ApprovalRecord(approver="alice", reason="mine", overrides=["regression"]),
                   ApprovalRecord(approver="bob", reason="looked", overrides=["nope"])])
    return decide(ctx, POLICY)


def _stored(tmp_path: Path, decision: Decision) -> Decision:
    """``decision`` written to a real registry and read back."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.safetensors").write_bytes(b"weights" * 64)
    store = Store(tmp_path / ".loopgate")
    try:
        store.sync_lines({"base": ("foundation", None), "support": ("industrial", "base")})
        for _ in range(3):
            store.add_version("support", {"model.safetensors": src / "model.safetensors"})
        store.add_decision(decision)
        return store.decisions("support@3")[-1]
    finally:
        store.close()


def test_a_stored_decision_round_trips_through_each_gates_evidence_model(tmp_path: Path) -> None:
    made = _busy_decision()
    assert {g.verdict for g in made.gates} == {Verdict.failed, Verdict.passed}  # the gates found things
    stored = _stored(tmp_path, made)
    assert [g.name for g in stored.gates] == list(EVIDENCE)
    for gate in stored.gates:
        typed = gate.evidence_as(EVIDENCE[gate.name])
        assert type(typed) is EVIDENCE[gate.name]
        # the stored dict, read back from the registry, is what the model dumps to: no key added, lost or changed
        assert typed.model_dump(mode="json", exclude_unset=True) == gate.evidence, gate.name
        assert typed.model_extra == {}, gate.name  # every key the gates write is a field of its model


def test_typed_evidence_reads_the_figures_the_gates_measured() -> None:
    gates = {g.name: g for g in _busy_decision().gates}
    reg = gates["regression"].evidence_as(RegressionEvidence)
    assert reg.baseline is not None and reg.baseline.version == "support@2"
    qa = reg.suites["qa"]
    assert qa.compared and qa.delta is not None and qa.delta == pytest.approx(-0.3)
    assert qa.negative_flips == 12 and qa.verdict is Verdict.failed
    inh = gates["inheritance"].evidence_as(InheritanceEvidence)
    assert set(inh.suites["core"].checks) == {"parent", "previous"}
    assert all(c.delta == pytest.approx(-0.3) for c in inh.suites["core"].checks.values())
    safety = gates["safety"].evidence_as(SafetyEvidence)
    assert safety.unsafe_flips == 8 and len(safety.flipped) == 8 and safety.flipped[0].suite == "harm"
    assert safety.suites["harm"].refusal_rate == pytest.approx(0.6)
    assert sum(c.n for c in safety.suites["harm"].categories.values()) == 20
    cost = gates["cost"].evidence_as(CostEvidence)
    growth = next(c for c in cost.checks if c.figure == "params")
    assert growth.value == pytest.approx(0.5) and growth.verdict is Verdict.failed and not growth.skipped
    latency = next(c for c in cost.checks if c.figure == "latency_p95_ms")
    assert latency.kind == "ratio" and latency.value == pytest.approx(3.0)
    rb = gates["rollback"].evidence_as(RollbackEvidence)
    assert rb.target == "support@2" and rb.smoke_drift == pytest.approx(-0.4)
    plast = gates["plasticity"].evidence_as(PlasticityEvidence)
    assert plast.headroom == pytest.approx(0.2) and plast.remedy and plast.remedy.startswith("ReDo")
    appr = gates["approval"].evidence_as(ApprovalEvidence)
    assert appr.approvers == ["bob"] and appr.refused_self_approvals == ["alice"]
    assert {(r.approver, r.gate) for r in appr.refused_overrides} == {("alice", "regression"), ("bob", "nope")}


def test_evidence_from_an_older_or_newer_loopgate_keeps_its_unknown_keys() -> None:
    old: dict[str, Any] = {"thresholds": {"tolerance": 0.02}, "suites": {"qa": {"verdict": "pass", "reason": "ok",
                                                                                "legacy_figure": 3}},
                           "note_from_the_past": [1, 2]}
    typed = evidence_of("regression", old)
    assert isinstance(typed, RegressionEvidence) and typed.suites["qa"].verdict is Verdict.passed
    assert typed.model_dump(mode="json", exclude_unset=True) == old
    # a gate with no model of its own (one a test or a plug-in adds) reads as the untyped base, keys kept
    assert evidence_of("toy", {"x": 1}).dump() == {"x": 1}


def test_provenance_reads_fields_keeps_foreign_keys_and_ignores_mistyped_ones() -> None:
    prov = Provenance.of({"method": "lora", "built_from": "support@2", "train_flops": 6e9, "mine": {"a": 1},
                          "transferred_from": {"old_child": "support@1", "old_parent": "base@1"}})
    assert (prov.method, prov.built_from, prov.train_flops) == ("lora", "support@2", 6e9)
    assert prov.model_extra == {"mine": {"a": 1}} and prov.old_child == "support@2"
    moved = Provenance.of({"strategy": "rerun", "transferred_from": {"old_child": "support@1"}})
    assert moved.built_from is None and moved.old_child == "support@1"
    foreign = Provenance.of({"built_from": 7, "method": "sft"})  # a foreign tool's idea of built_from
    assert foreign.built_from is None and foreign.method == "sft"
    assert Provenance.of({}).old_child is None


def test_baselines_are_a_typed_record_stored_as_the_same_dict() -> None:
    roles = {"production": None, "previous": "support@2", "parent": "base@1"}
    b = Baselines.of(roles)
    assert b.replaced() == ("previous", "support@2") and b.parent == "base@1"
    assert b.as_dict() == roles
    assert Baselines.of({}).replaced() is None and Baselines.of({}).as_dict() == {}


def test_gate_margin_reads_how_far_past_its_threshold_each_gate_was() -> None:
    gates = {g.name: g for g in _busy_decision().gates}
    tol = POLICY.regression.tolerance
    # a 12-of-40 drop (Δ −0.3) is past the regression tolerance by 0.3 − tolerance
    assert gate_margin(gates["regression"]) == pytest.approx(0.3 - tol)
    assert gate_margin(gates["safety"]) == pytest.approx(POLICY.safety.min_refusal_rate - 0.6)
    assert gate_margin(gates["cost"]) == 1.0  # fails, with no distance its evidence states
    assert gate_margin(gates["approval"]) == 0.0  # passes: no room stated
    passing = decide(context(owned_suites=["qa"], candidate_evals={"qa": ev("qa", right_wrong(40), "support@3")},
                             baselines={"production": "support@2"},
                             baseline_evals={"production": {"qa": ev("qa", right_wrong(40, range(4)))}}), POLICY)
    reg = next(g for g in passing.gates if g.name == "regression")
    assert reg.verdict is Verdict.passed and gate_margin(reg) < -0.1  # improved by 0.1: room left, negative
