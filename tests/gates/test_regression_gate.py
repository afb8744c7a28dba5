"""Regression gate: fail only on a confident drop beyond the tolerance; too small → inconclusive."""

from __future__ import annotations

from gate_helpers import context, ev, right_wrong

from loopgate.gates import regression
from loopgate.records import Verdict
from loopgate.spec import RegressionPolicy

POLICY = RegressionPolicy()  # tolerance 0.05, confidence 0.95, NFR ceiling 0.15, min 20 examples


def _ctx(cand: list[int], base: list[int], role: str = "production", **kw: object):  # type: ignore[no-untyped-def]
    baselines = {"production": None, "previous": None, "parent": None, role: "support@2"}
    return context(owned_suites=["faq"], candidate_evals={"faq": ev("faq", cand, "support@3")},
                   baselines=baselines, baseline_evals={role: {"faq": ev("faq", base)}}, **kw)


def test_first_release_passes_with_no_baseline() -> None:
    ctx = context(owned_suites=["faq"], candidate_evals={"faq": ev("faq", right_wrong(50))},
                  baselines={"production": None, "previous": None, "parent": None})
    r = regression(ctx, POLICY)
    assert r.verdict is Verdict.passed and "no baseline" in r.summary
    assert r.evidence["baseline"] is None


def test_same_level_passes() -> None:
    r = regression(_ctx(right_wrong(50, {1, 2}), right_wrong(50, {1, 2})), POLICY)
    assert r.verdict is Verdict.passed, r.summary
    assert r.evidence["suites"]["faq"]["delta"] == 0.0
    assert r.evidence["baseline"] == {"role": "production", "version": "support@2"}


def test_forgetting_an_owned_suite_fails_with_the_flipped_ids() -> None:
    r = regression(_ctx(right_wrong(50, range(20)), right_wrong(50)), POLICY)
    assert r.verdict is Verdict.failed and r.blocking
    faq = r.evidence["suites"]["faq"]
    assert faq["delta"] == -0.4 and faq["ci_high"] < -0.05 and faq["mcnemar_p"] < 0.05
    assert faq["negative_flip_ids"] == [f"q{i}" for i in range(20)]
    assert r.evidence["thresholds"]["tolerance"] == 0.05


def test_a_suite_too_small_to_tell_is_inconclusive_not_pass() -> None:
    r = regression(_ctx(right_wrong(10, range(8)), right_wrong(10)), POLICY)
    assert r.verdict is Verdict.inconclusive
    assert "min_examples" in r.evidence["suites"]["faq"]["reason"]


def test_a_drop_beyond_tolerance_without_confidence_is_inconclusive() -> None:
    # 5 one-way flips on 40: Δ −0.125, but McNemar p = 2 × 0.5⁵ = 0.0625 and the CI reaches past −0.05
    r = regression(_ctx(right_wrong(40, range(5)), right_wrong(40)), POLICY)
    assert r.verdict is Verdict.inconclusive, r.summary
    assert "not significant" in r.summary


def test_a_small_insignificant_dip_passes() -> None:
    r = regression(_ctx(right_wrong(100, {0}), right_wrong(100)), POLICY)
    assert r.verdict is Verdict.passed


def test_negative_flip_rate_ceiling_fails_even_when_the_mean_holds() -> None:
    base = right_wrong(50, range(10, 20))  # wrong on q10..q19
    cand = right_wrong(50, range(10))  # fixes those, breaks q0..q9: Δ 0, NFR 0.2
    r = regression(_ctx(cand, base), POLICY)
    assert r.verdict is Verdict.failed
    assert r.evidence["suites"]["faq"]["negative_flip_rate"] == 0.2
    assert "negative flip rate" in r.summary


def test_previous_is_the_baseline_when_nothing_is_in_production() -> None:
    r = regression(_ctx(right_wrong(50, range(20)), right_wrong(50), role="previous"), POLICY)
    assert r.verdict is Verdict.failed
    assert r.evidence["baseline"]["role"] == "previous"


def test_missing_candidate_evaluation_is_inconclusive_and_new_suite_passes() -> None:
    ctx = context(owned_suites=["faq", "new"], candidate_evals={"new": ev("new", right_wrong(30))},
                  baselines={"production": "support@2"}, baseline_evals={"production": {}})
    r = regression(ctx, POLICY)
    assert r.verdict is Verdict.inconclusive
    assert r.evidence["suites"]["new"]["verdict"] == Verdict.passed
    assert "not evaluated" in r.evidence["suites"]["faq"]["reason"]
