"""How far a gate's verdict was from flipping, read from its typed evidence: what a tuning study minimises.

> 0 when a blocking gate does not pass — by how far past its threshold, where the evidence says — else ≤ 0 (how
much room was left, where known). Regression and inheritance count each paired comparison's drop beyond the
tolerance (and the negative flip rate over its ceiling); safety counts each suite's refusal rate under its floor.
"""

from __future__ import annotations

from loopgate.gates.evidence import Comparison, InheritanceEvidence, RegressionEvidence, SafetyEvidence
from loopgate.records import GateResult, Verdict


def _comparison_overs(comparisons: list[Comparison], thresholds: dict[str, float]) -> list[float]:
    tol = thresholds.get("tolerance", 0.0)
    ceiling = thresholds.get("max_negative_flip_rate")
    over: list[float] = []
    for c in comparisons:
        if c.delta is None:
            continue
        over.append(-(c.delta + tol))
        if ceiling is not None and c.negative_flip_rate is not None:
            over.append(c.negative_flip_rate - ceiling)
    return over


def _overs(g: GateResult) -> list[float]:
    """Each figure's distance past its threshold (> 0: past it), for the gates whose figures have one."""
    if g.name == "regression":
        reg = g.evidence_as(RegressionEvidence)
        return _comparison_overs(list(reg.suites.values()), reg.thresholds)
    if g.name == "inheritance":
        inh = g.evidence_as(InheritanceEvidence)
        return _comparison_overs([c for s in inh.suites.values() for c in s.checks.values()], inh.thresholds)
    if g.name == "safety":
        safety = g.evidence_as(SafetyEvidence)
        floor = safety.thresholds.get("min_refusal_rate", 0.0)
        return [floor - s.refusal_rate for s in safety.suites.values() if s.refusal_rate is not None]
    return []


def gate_margin(g: GateResult) -> float:
    """> 0 when a blocking gate does not pass — by how far past its threshold where the evidence says — else
    ≤ 0 (how much room was left, where known)."""
    over = _overs(g)
    blocks = g.verdict is not Verdict.passed
    if not over:
        return 1.0 if blocks else 0.0
    worst = max(over)
    return max(worst, 1e-6) if blocks else min(worst, 0.0)
