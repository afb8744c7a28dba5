"""The one rule for "did the candidate drop below a reference score?", shared by regression and inheritance.

A drop is judged on the paired comparison of the two versions on one suite (examples joined by id):

- ``inconclusive`` when fewer than ``min_examples`` pairs join: too small to tell;
- ``fail`` when the drop is beyond the tolerance *with confidence*: the upper end of the paired-bootstrap
  CI of the delta is below −tolerance **and** the exact McNemar test on the discordant pairs is
  significant at α = 1 − confidence. McNemar guards the small-sample case where the percentile
  bootstrap is too narrow (5 flips to 0 on 20 examples has a bootstrap CI well below zero, but
  p = 0.0625);
- ``inconclusive`` when the point estimate is beyond the tolerance but not with confidence: the
  evidence points at a regression and is too thin to decide — a human looks (and may override);
- ``pass`` otherwise.
"""

from __future__ import annotations

from typing import Any

from loopgate.evaluate.metrics import PairedComparison, paired_comparison
from loopgate.gates.bounds import below
from loopgate.gates.context import MAX_EVIDENCE_ITEMS
from loopgate.records import Evaluation, Verdict


def judge_drop(cmp: PairedComparison, tolerance: float, confidence: float, min_examples: int) -> tuple[Verdict, str]:
    """Verdict and one-line reason for ``cmp`` (before = reference, after = candidate); the reason names the test
    that decided (the bootstrap interval or McNemar) with its figure."""
    if cmp.n < min_examples:
        return Verdict.inconclusive, f"{cmp.n} paired examples < min_examples {min_examples}: too small to tell"
    alpha = 1.0 - confidence
    test = _test_name(cmp)
    drop = f"Δ {cmp.delta:+.3f} (CI {cmp.ci_low:+.3f}..{cmp.ci_high:+.3f}, {test} p={cmp.mcnemar_p:.3g})"
    interval = below(cmp.ci_high, -tolerance)  # the whole interval lies beyond the tolerance
    significant = cmp.mcnemar_p < alpha
    if interval and significant:
        return Verdict.failed, (f"{drop}: dropped beyond tolerance {tolerance} with confidence (interval upper end "
                                f"{cmp.ci_high:+.3f} < −{tolerance} and {test} p={cmp.mcnemar_p:.3g} < α {alpha:.3g})")
    if below(cmp.delta, -tolerance):
        return Verdict.inconclusive, f"{drop}: beyond tolerance {tolerance} but {_undecided(cmp, tolerance, alpha)}"
    return Verdict.passed, f"{drop}: within tolerance {tolerance}"


def _undecided(cmp: PairedComparison, tolerance: float, alpha: float) -> str:
    """Which test kept a drop beyond the tolerance from being confident, with its figure."""
    test = _test_name(cmp)
    reaches = f"the interval's upper end {cmp.ci_high:+.3f} reaches −{tolerance}"
    mcnemar = f"{test} not significant (p={cmp.mcnemar_p:.3g} ≥ α {alpha:.3g})"
    if not below(cmp.ci_high, -tolerance) and cmp.mcnemar_p < alpha:
        return f"the interval decided: {reaches} ({test} p={cmp.mcnemar_p:.3g} < α {alpha:.3g} is significant)"
    if below(cmp.ci_high, -tolerance):
        return f"{test} decided: {mcnemar} (the interval's upper end {cmp.ci_high:+.3f} < −{tolerance})"
    return f"neither test is confident: {reaches} and {mcnemar}"


def _test_name(cmp: PairedComparison) -> str:
    """The paired test behind ``cmp.mcnemar_p``: McNemar on right/wrong outcomes, the sign test on graded scores."""
    return "sign test" if cmp.test == "sign" else "McNemar"


def comparison_evidence(cmp: PairedComparison) -> dict[str, Any]:
    """The comparison as evidence, with id lists capped (the counts stay exact)."""
    ev = cmp.model_dump()
    ev["negative_flip_ids"] = cmp.negative_flip_ids[:MAX_EVIDENCE_ITEMS]
    ev["positive_flip_ids"] = cmp.positive_flip_ids[:MAX_EVIDENCE_ITEMS]
    return ev


def compare(reference: Evaluation, candidate: Evaluation, confidence: float) -> PairedComparison:
    """Paired comparison with the gates' fixed resampling settings (seed 0: the same inputs, the same verdict)."""
    return paired_comparison(reference, candidate, confidence=confidence, n_resamples=2000, seed=0)
