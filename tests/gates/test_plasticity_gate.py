"""Plasticity gate: headroom vs the foundation; warn-only by default."""

from __future__ import annotations

from gate_helpers import context

from loopgate.gates import plasticity
from loopgate.records import Verdict
from loopgate.spec import PlasticityPolicy

REF = {"probe_improvement": 2.0, "dormant_ratio": 0.0}


def test_enough_headroom_passes() -> None:
    r = plasticity(context(candidate_profile={"probe_improvement": 1.5}, baseline_profiles={"foundation": REF}),
                   PlasticityPolicy())
    assert r.verdict is Verdict.passed and r.evidence["headroom"] == 0.75


def test_low_headroom_fails_but_does_not_block_by_default() -> None:
    ctx = context(candidate_profile={"probe_improvement": 0.2}, baseline_profiles={"foundation": REF})
    r = plasticity(ctx, PlasticityPolicy())
    assert r.verdict is Verdict.failed and not r.blocking and "warning only" in r.summary
    assert plasticity(ctx, PlasticityPolicy(blocking=True)).blocking


def test_precomputed_headroom_is_used() -> None:
    r = plasticity(context(candidate_profile={"plasticity_headroom": 0.9}), PlasticityPolicy())
    assert r.verdict is Verdict.passed


def test_unknown_headroom_is_inconclusive() -> None:
    assert plasticity(context(), PlasticityPolicy()).verdict is Verdict.inconclusive
    flat = {"probe_improvement": 0.0}
    r = plasticity(context(candidate_profile={"probe_improvement": 1.0}, baseline_profiles={"foundation": flat}),
                   PlasticityPolicy())
    assert r.verdict is Verdict.inconclusive and r.evidence["headroom"] is None
