"""Plasticity gate: the candidate can still learn — headroom ≥ floor (warn-only by default).

Headroom (``loopgate.evaluate.plasticity``) = the candidate's improvement on the fixed probe task /
the foundation ancestor's. It is taken from ``candidate_profile['plasticity_headroom']`` when the loop
computed it, else from the candidate's and the ``foundation`` profile. Non-blocking unless the policy
says ``blocking: true``: a fail is recorded in the decision and stops nothing.
"""

from __future__ import annotations

import math

from loopgate.evaluate.metrics import plasticity_headroom
from loopgate.gates.context import FOUNDATION, GateContext, result
from loopgate.records import GateResult, Verdict
from loopgate.spec import PlasticityPolicy

NAME = "plasticity"
_FIGURES = ("dormant_ratio", "effective_rank", "weight_norm", "probe_loss_start", "probe_loss_end",
            "probe_improvement")


def plasticity(ctx: GateContext, policy: PlasticityPolicy) -> GateResult:
    """Headroom vs the foundation reference, with the other plasticity figures as evidence."""
    prof = ctx.candidate_profile
    ref = ctx.baseline_profiles.get(FOUNDATION)
    figures = {k: prof[k] for k in _FIGURES if k in prof}
    reference = {k: ref[k] for k in _FIGURES if ref and k in ref}
    headroom = prof.get("plasticity_headroom")
    if headroom is None and ref and "probe_improvement" in prof and "probe_improvement" in ref:
        headroom = plasticity_headroom(prof, ref)
    evidence = {"headroom": headroom, "min_headroom": policy.min_headroom, "candidate": figures,
                "reference": reference}
    if headroom is None or math.isnan(headroom):
        why = "no plasticity figures" if headroom is None else "the reference did not improve on the probe"
        evidence["headroom"] = None
        return result(NAME, Verdict.inconclusive, policy.blocking, f"headroom unknown: {why}", **evidence)
    ok = headroom >= policy.min_headroom
    summary = f"headroom {headroom:.2f} {'≥' if ok else '<'} floor {policy.min_headroom}"
    if not ok and not policy.blocking:
        summary += " (warning only)"
    return result(NAME, Verdict.passed if ok else Verdict.failed, policy.blocking, summary, **evidence)
