"""Plasticity gate: the candidate can still learn — headroom ≥ floor (warn-only by default).

Headroom (``loopgate.evaluate.plasticity``) = the candidate's improvement on the fixed probe task /
the foundation ancestor's. It is taken from ``candidate_profile['plasticity_headroom']`` when the loop
computed it, else from the candidate's and the ``foundation`` profile. Non-blocking unless the policy
says ``blocking: true``: a fail is recorded in the decision and stops nothing.

A fail names the remedy to try (:func:`remedy`), as recipe keys (``loopgate/train/remedies.py``): ReDo when
dormant MLP units explain the loss, shrink-and-perturb when the weights grew, else shrink-and-perturb with
gentler updates.
"""

from __future__ import annotations

import math

from loopgate.evaluate.metrics import plasticity_headroom
from loopgate.gates.bounds import below
from loopgate.gates.context import FOUNDATION, GateContext, result
from loopgate.gates.evidence import PlasticityEvidence
from loopgate.records import GateResult, Verdict
from loopgate.spec import PlasticityPolicy

NAME = "plasticity"
_FIGURES = ("dormant_ratio", "effective_rank", "weight_norm", "probe_loss_start", "probe_loss_end",
            "probe_improvement", "dormant_tau")
DORMANT_SIGN = 0.05  # this share of dormant units (above the reference's) points at ReDo
GROWTH_SIGN = 1.5  # weights grown this many times the reference's norm point at shrink-and-perturb


def remedy(candidate: dict[str, float], reference: dict[str, float]) -> str:
    """The plasticity remedy to try first, as recipe keys, with the figure that points at it."""
    dormant = candidate.get("dormant_ratio", 0.0) - reference.get("dormant_ratio", 0.0)
    if dormant >= DORMANT_SIGN:
        return (f"ReDo — add 'redo_every: 25' (and 'redo_tau: 0.1') to the recipe: {dormant:.0%} more of the MLP "
                "units are dormant than in the reference")
    ref_norm, norm = reference.get("weight_norm"), candidate.get("weight_norm")
    if ref_norm and norm and norm / ref_norm >= GROWTH_SIGN:
        return (f"shrink-and-perturb — add 'shrink: 0.2' and 'noise: 0.8' to the recipe: the weights grew to "
                f"{norm / ref_norm:.1f}× the reference's norm")
    return ("shrink-and-perturb — add 'shrink: 0.2' and 'noise: 0.8' to the recipe, and train gentler (a lower lr, "
            "more replay)")


def plasticity(ctx: GateContext, policy: PlasticityPolicy) -> GateResult:
    """Headroom vs the foundation reference, with the other plasticity figures as evidence."""
    prof = ctx.candidate_profile
    ref = ctx.baseline_profiles.get(FOUNDATION)
    figures = {k: prof[k] for k in _FIGURES if k in prof}
    reference = {k: ref[k] for k in _FIGURES if ref and k in ref}
    headroom = prof.get("plasticity_headroom")
    if headroom is None and ref and "probe_improvement" in prof and "probe_improvement" in ref:
        headroom = plasticity_headroom(prof, ref)
    evidence = PlasticityEvidence(headroom=headroom, min_headroom=policy.min_headroom, candidate=figures,
                                  reference=reference)
    if headroom is None or math.isnan(headroom):
        why = "no plasticity figures" if headroom is None else "the reference did not improve on the probe"
        evidence.headroom = None
        return result(NAME, Verdict.inconclusive, policy.blocking, f"headroom unknown: {why}", evidence)
    ok = not below(headroom, policy.min_headroom)
    summary = f"headroom {headroom:.2f} {'≥' if ok else '<'} floor {policy.min_headroom}"
    if not ok:
        fix = remedy(figures, reference)
        evidence.remedy = fix
        summary += f"; try {fix}"
    if not ok and not policy.blocking:
        summary += " (warning only)"
    return result(NAME, Verdict.passed if ok else Verdict.failed, policy.blocking, summary, evidence)
