"""Tolerances are exact at the boundary (a drop of exactly 0.15 is within a 0.15 tolerance, whatever float
rounding makes of it), and a drop judged "not confident" names the test that decided, with its figure."""

from __future__ import annotations

from gate_helpers import context, ev, right_wrong, safety_ev

from loopgate.gates import cost, inheritance, plasticity, regression, safety
from loopgate.gates.bounds import below, exceeds
from loopgate.gates.judge import compare
from loopgate.records import Evaluation, Verdict
from loopgate.spec import CostPolicy, InheritancePolicy, PlasticityPolicy, RegressionPolicy, SafetyPolicy


def _owned(cand: list[int], base: list[int]):  # type: ignore[no-untyped-def]
    return context(owned_suites=["faq"], candidate_evals={"faq": ev("faq", cand, "support@3")},
                   baselines={"production": "support@2"},
                   baseline_evals={"production": {"faq": ev("faq", base, "support@2")}})


def test_the_float_rounding_these_tests_guard_against_is_real() -> None:
    # 17/20 right after 20/20 as a difference of scores is −0.15000000000000002, not −0.15: beyond a plain `<`
    delta = 17 / 20 - 1.0
    assert delta < -0.15 and not below(delta, -0.15)
    assert below(16 / 20 - 1.0, -0.15) and exceeds(2.5 + 1e-6, 2.5)  # a real difference still counts


def test_regression_drop_of_exactly_the_tolerance_is_within_it() -> None:
    policy = RegressionPolicy(tolerance=0.15, max_negative_flip_rate=0.15, min_examples=20)
    r = regression(_owned(right_wrong(20, range(3)), right_wrong(20)), policy)
    assert r.verdict is Verdict.passed, r.summary
    assert "within tolerance 0.15" in r.evidence["suites"]["faq"]["reason"]
    # one more flip is beyond it (Δ −0.2): the comparison is not simply loosened
    worse = regression(_owned(right_wrong(20, range(4)), right_wrong(20)), policy)
    assert worse.verdict is not Verdict.passed


def test_inheritance_drop_of_exactly_the_tolerance_is_within_it() -> None:
    ctx = context(inherited_suites=["general"],
                  candidate_evals={"general": ev("general", right_wrong(20, range(3)), "support@3")},
                  baselines={"parent": "base@4", "previous": None},
                  baseline_evals={"parent": {"general": ev("general", right_wrong(20), "base@4")}})
    r = inheritance(ctx, InheritancePolicy(tolerance=0.15))
    assert r.verdict is Verdict.passed, r.summary
    worse = ctx.model_copy(update={"candidate_evals": {"general": ev("general", right_wrong(20, range(4)))}})
    assert inheritance(worse, InheritancePolicy(tolerance=0.15)).verdict is not Verdict.passed


def _tokens(e: Evaluation, tokens: list[int]) -> Evaluation:
    return e.model_copy(update={"examples": [x.model_copy(update={"output_tokens": t})
                                             for x, t in zip(e.examples, tokens, strict=True)]})


def test_cost_ratio_of_exactly_the_limit_holds() -> None:
    # mean 5/3 over mean 2/3 = 2.5000000000000004 in floats; the budget is 2.5
    def ctx(cand: list[int]):  # type: ignore[no-untyped-def]
        return context(owned_suites=["faq"],
                       candidate_evals={"faq": _tokens(ev("faq", [1, 1, 1], "support@3"), cand)},
                       baselines={"production": "support@2"},
                       baseline_evals={"production": {"faq": _tokens(ev("faq", [1, 1, 1]), [1, 1, 0])}})
    policy = CostPolicy(max_latency_p95_ratio=None, max_mean_output_length_ratio=2.5, max_param_growth=None,
                        max_cost_per_1k_ratio=None)
    r = cost(ctx([2, 2, 1]), policy)
    row = next(c for c in r.evidence["checks"] if c["figure"] == "mean_output_tokens")
    assert row["value"] > 2.5 and r.verdict is Verdict.passed, r.summary
    assert cost(ctx([2, 2, 2]), policy).verdict is Verdict.failed  # ratio 3: over


def test_plasticity_headroom_of_exactly_the_floor_holds() -> None:
    # 0.01 / 0.05 = 0.2 exactly, 0.19999999999999998 in floats
    ctx = context(candidate_profile={"probe_improvement": 0.01},
                  baseline_profiles={"foundation": {"probe_improvement": 0.05}})
    r = plasticity(ctx, PlasticityPolicy(min_headroom=0.2))
    assert r.evidence["headroom"] < 0.2 and r.verdict is Verdict.passed, r.summary
    low = ctx.model_copy(update={"candidate_profile": {"probe_improvement": 0.009}})
    assert plasticity(low, PlasticityPolicy(min_headroom=0.2)).verdict is Verdict.failed


def test_a_drop_kept_inconclusive_by_the_interval_says_so_not_mcnemar() -> None:
    # 8 one-way flips on 40: McNemar p = 0.0078 is significant, but the interval reaches −0.1
    cand, base = right_wrong(40, range(8)), right_wrong(40)
    cmp = compare(ev("faq", base), ev("faq", cand), 0.95)
    assert cmp.mcnemar_p < 0.05 and cmp.ci_high > -0.1  # the case of the issue
    r = regression(_owned(cand, base), RegressionPolicy(tolerance=0.1, max_negative_flip_rate=1.0))
    reason = r.evidence["suites"]["faq"]["reason"]
    assert r.verdict is Verdict.inconclusive
    assert "the interval decided" in reason and f"{cmp.ci_high:+.3f}" in reason
    assert "not significant" not in reason


def test_a_drop_kept_inconclusive_by_mcnemar_says_so() -> None:
    # 5 one-way flips on 40: the percentile interval is below −0.05 but McNemar p = 0.0625
    cand, base = right_wrong(40, range(5)), right_wrong(40)
    cmp = compare(ev("faq", base), ev("faq", cand), 0.95)
    r = regression(_owned(cand, base), RegressionPolicy(tolerance=0.05, max_negative_flip_rate=1.0))
    reason = r.evidence["suites"]["faq"]["reason"]
    assert r.verdict is Verdict.inconclusive
    if cmp.ci_high < -0.05:
        assert "McNemar decided" in reason and "p=0.0625" in reason
    else:
        assert "neither test is confident" in reason and "p=0.0625" in reason


def test_safety_flips_under_their_limit_do_not_claim_insignificance() -> None:
    # 6 unsafe flips of 40: McNemar p = 0.031 is significant; the limit of 6 flips decided
    base = safety_ev("harm", [1] * 40)
    cand = safety_ev("harm", [0] * 6 + [1] * 34, version="support@3")
    ctx = context(owned_suites=["harm"], safety_suites=["harm"], candidate_evals={"harm": cand},
                  baselines={"production": "support@2"}, baseline_evals={"production": {"harm": base}})
    r = safety(ctx, SafetyPolicy(max_safety_flips=6, min_refusal_rate=0.5))
    reason = r.evidence["suites"]["harm"]["reason"]
    assert r.evidence["suites"]["harm"]["mcnemar_p"] < 0.05
    assert "not significant" not in reason and "≤ limit 6" in reason, reason
