"""Rollback-readiness gate: never ship what you cannot undo.

The version a release would replace (the line's production version) must exist, its artifact hashes must
verify, it must load, and — reloaded from its stored weights and re-scored on the smoke suite — it must
still behave as it did when it shipped: its fresh score within ``smoke_tolerance`` of the score recorded
for it then. The test is relative on purpose: an absolute floor would block every improvement of a weak
line (a production version at 0.32 would fail a 0.5 floor forever). A floor applies only when the policy
sets ``min_smoke_score``. A first release has nothing to replace and passes; if the loop did not gather
the facts, the gate is inconclusive.
"""

from __future__ import annotations

from loopgate.gates.context import GateContext, result
from loopgate.gates.evidence import RollbackEvidence
from loopgate.records import GateResult, Verdict
from loopgate.spec import RollbackPolicy

NAME = "rollback"


def rollback(ctx: GateContext, policy: RollbackPolicy) -> GateResult:
    """Is the rollback target present, intact, loadable and still behaving as when it shipped?"""
    thresholds = policy.model_dump(exclude={"blocking"})
    rb = ctx.rollback
    if rb is None:
        if not ctx.baselines.get("production"):
            return result(NAME, Verdict.passed, policy.blocking, "first release: nothing to roll back to",
                          RollbackEvidence(target=None, thresholds=thresholds))
        return result(NAME, Verdict.inconclusive, policy.blocking, "rollback readiness was not checked",
                      RollbackEvidence(target=ctx.baselines.get("production"), thresholds=thresholds))
    facts = rb.model_dump()
    if rb.target is None:
        return result(NAME, Verdict.passed, policy.blocking, "first release: nothing to roll back to",
                      RollbackEvidence(thresholds=thresholds, **facts))
    problems = []
    drift: float | None = None
    if not rb.exists:
        problems.append("the target version does not exist")
    elif not rb.hashes_ok:
        problems.append("its artifact hashes do not verify")
    elif not rb.loads:
        problems.append("it does not load")
    elif rb.smoke_score is None:
        if policy.smoke_suite is not None:
            problems.append(f"smoke suite {policy.smoke_suite} did not run on it")
    else:
        if rb.recorded_smoke_score is not None:
            drift = rb.smoke_score - rb.recorded_smoke_score
            if abs(drift) > policy.smoke_tolerance:
                problems.append(f"re-scored {rb.smoke_score:.3f} on {rb.smoke_suite}, but it scored "
                                f"{rb.recorded_smoke_score:.3f} when it shipped (|Δ| {abs(drift):.3f} > "
                                f"tolerance {policy.smoke_tolerance})")
        if policy.min_smoke_score is not None and rb.smoke_score < policy.min_smoke_score:
            problems.append(f"smoke score {rb.smoke_score:.3f} < {policy.min_smoke_score}")
    if problems:
        detail = f" ({rb.error})" if rb.error else ""
        return result(NAME, Verdict.failed, policy.blocking,
                      f"cannot roll back to {rb.target}: {'; '.join(problems)}{detail}",
                      RollbackEvidence(thresholds=thresholds, smoke_drift=drift, **facts))
    smoke = ""
    if rb.smoke_score is not None:
        smoke = f", re-scored {rb.smoke_score:.3f} on {rb.smoke_suite}"
        if rb.recorded_smoke_score is not None:
            smoke += f" (shipped at {rb.recorded_smoke_score:.3f})"
    return result(NAME, Verdict.passed, policy.blocking,
                  f"{rb.target} is ready to roll back to (verified, loads{smoke})",
                  RollbackEvidence(thresholds=thresholds, smoke_drift=drift, **facts))
