"""Regression gate: on the line's own suites, the candidate does not drop below the version it replaces.

Baseline: the line's production version, else its previous version; none at all (a first release) passes
with "no baseline" in the evidence. Per suite, the drop is judged by :func:`loopgate.gates.judge.judge_drop`
(fail only beyond the tolerance with confidence; inconclusive when too small to tell), and the negative
flip rate must stay under its ceiling (Yan et al. 2021: a release that fixes as many items as it breaks
still breaks users' items).
"""

from __future__ import annotations

from loopgate.gates.bounds import exceeds
from loopgate.gates.calibration import cap_uncalibrated
from loopgate.gates.context import GateContext, combine, result
from loopgate.gates.evidence import Comparison, RegressionEvidence, Role
from loopgate.gates.judge import compare, comparison_evidence, judge_drop
from loopgate.records import GateResult, Verdict
from loopgate.spec import RegressionPolicy

NAME = "regression"


def regression(ctx: GateContext, policy: RegressionPolicy) -> GateResult:
    """Owned suites vs the production (else previous) baseline."""
    thresholds = policy.model_dump(exclude={"blocking"})
    base = ctx.replaced_baseline()
    if not ctx.owned_suites:
        return result(NAME, Verdict.passed, policy.blocking, "the line owns no suites",
                      RegressionEvidence(thresholds=thresholds))
    if base is None:
        return result(NAME, Verdict.passed, policy.blocking, "no baseline: first release of the line",
                      RegressionEvidence(baseline=None, thresholds=thresholds))
    role, version = base
    suites: dict[str, Comparison] = {}
    for suite in ctx.owned_suites:
        cand = ctx.candidate_evals.get(suite)
        ref = ctx.baseline_eval(role, suite)
        if cand is None:
            suites[suite] = Comparison(verdict=Verdict.inconclusive, reason="candidate not evaluated on this suite")
            continue
        if ref is None:
            suites[suite] = Comparison(verdict=Verdict.passed, reason=f"no {role} evaluation: a new suite",
                                       after_score=cand.score)
            continue
        cmp = compare(ref, cand, policy.confidence)
        verdict, reason = judge_drop(cmp, policy.tolerance, policy.confidence, policy.min_examples)
        # a flip rate on too few examples is noise; judge_drop already said inconclusive
        if cmp.n >= policy.min_examples and exceeds(cmp.negative_flip_rate, policy.max_negative_flip_rate):
            verdict = Verdict.failed
            reason += f"; negative flip rate {cmp.negative_flip_rate:.3f} > ceiling {policy.max_negative_flip_rate}"
        verdict, reason, judged = cap_uncalibrated(verdict, reason, cand, policy.judge_min_kappa)  # scorer: judge
        suites[suite] = Comparison(verdict=verdict, reason=reason, **comparison_evidence(cmp), **judged)
    verdict = combine([s.verdict for s in suites.values()])
    bad = [f"{s}: {e.reason}" for s, e in suites.items() if e.verdict == verdict]
    summary = (f"all {len(suites)} owned suites hold vs {role} {version}" if verdict is Verdict.passed
               else f"{verdict.value} vs {role} {version} — " + "; ".join(bad))
    return result(NAME, verdict, policy.blocking, summary,
                  RegressionEvidence(baseline=Role(role=role, version=version), thresholds=thresholds, suites=suites))
