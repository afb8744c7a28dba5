"""A model judge may block a release only once it is calibrated.

A ``scorer: judge`` suite's evaluation carries how well its judge agreed with human labels (Cohen's κ,
``evaluate/grading.py``). Below the policy's ``regression.judge_min_kappa`` — or with no labels, or a κ that is
undefined because the labels or the judge's answers are all one class — the judge's verdict on that suite is at
most inconclusive (a warning a person looks at), never a fail, and the evidence says why with κ, the threshold
and the number of labels. A judge that agrees with people often enough fails a regression like any scorer.
"""

from __future__ import annotations

from typing import Any

from loopgate.records import Evaluation, Verdict

LABELS, KAPPA = "judge_labels", "judge_kappa"


def judge_calibration(cand: Evaluation, min_kappa: float) -> dict[str, Any] | None:
    """The judge's calibration evidence for a judge-scored evaluation (None for any other suite)."""
    if LABELS not in cand.metrics:
        return None
    labels = int(cand.metrics[LABELS])
    kappa = cand.metrics.get(KAPPA)
    calibrated = labels > 0 and kappa is not None and kappa >= min_kappa
    if labels == 0:
        why = "no human labels (judge.calibration)"
    elif kappa is None:
        why = f"κ undefined on {labels} labels (the labels or the judge's answers are all one class)"
    else:
        why = f"κ {kappa:.3f} {'≥' if calibrated else '<'} {min_kappa} on {labels} labels"
    return {"kappa": kappa, "min_kappa": min_kappa, "labels": labels, "calibrated": calibrated, "why": why}


def cap_uncalibrated(verdict: Verdict, reason: str, cand: Evaluation, min_kappa: float
                     ) -> tuple[Verdict, str, dict[str, Any]]:
    """A suite's (verdict, reason, extra evidence) once its judge's calibration is taken into account: an
    uncalibrated judge's fail becomes inconclusive."""
    calibration = judge_calibration(cand, min_kappa)
    if calibration is None:
        return verdict, reason, {}
    if not calibration["calibrated"]:
        if verdict is Verdict.failed:
            verdict = Verdict.inconclusive
            reason += f"; warn only: the judge is not calibrated ({calibration['why']})"
        else:
            reason += f"; the judge is not calibrated ({calibration['why']}): a drop it finds would only warn"
    return verdict, reason, {"judge_calibration": calibration}
