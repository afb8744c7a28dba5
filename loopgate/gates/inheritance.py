"""Inheritance gate: on the suites inherited from its ancestors, the candidate keeps the parent's level.

Two checks per inherited suite, each judged by :func:`loopgate.gates.judge.judge_drop` with the
inheritance tolerance: candidate vs the parent line's production version (the capability the child was
built to carry), and candidate vs its own previous version (it must not lose what it already had).
A check whose baseline version does not exist is skipped and said so; one whose baseline exists but was
not evaluated is inconclusive.
"""

from __future__ import annotations

from loopgate.gates.context import PARENT, PREVIOUS, GateContext, combine, result
from loopgate.gates.evidence import Comparison, InheritanceEvidence, InheritedSuite
from loopgate.gates.judge import compare, comparison_evidence, judge_drop
from loopgate.records import GateResult, Verdict
from loopgate.spec import InheritancePolicy

NAME = "inheritance"


def inheritance(ctx: GateContext, policy: InheritancePolicy) -> GateResult:
    """Inherited suites vs the parent's production version and the line's previous version."""
    thresholds = policy.model_dump(exclude={"blocking"})
    if not ctx.inherited_suites:
        return result(NAME, Verdict.passed, policy.blocking, "the line inherits no suites",
                      InheritanceEvidence(thresholds=thresholds))
    suites: dict[str, InheritedSuite] = {}
    for suite in ctx.inherited_suites:
        cand = ctx.candidate_evals.get(suite)
        if cand is None:
            suites[suite] = InheritedSuite(verdict=Verdict.inconclusive, reason="candidate not evaluated on this suite")
            continue
        checks: dict[str, Comparison] = {}
        for role in (PARENT, PREVIOUS):
            version = ctx.baselines.get(role)
            if not version:
                checks[role] = Comparison(verdict=Verdict.passed, reason=f"no {role} version: nothing to keep up with")
                continue
            ref = ctx.baseline_eval(role, suite)
            if ref is None:
                checks[role] = Comparison(verdict=Verdict.inconclusive, version=version,
                                          reason=f"{role} {version} not evaluated on this suite")
                continue
            cmp = compare(ref, cand, policy.confidence)
            verdict, reason = judge_drop(cmp, policy.tolerance, policy.confidence, policy.min_examples)
            checks[role] = Comparison(verdict=verdict, version=version, reason=f"vs {role} {version}: {reason}",
                                      **comparison_evidence(cmp))
        suites[suite] = InheritedSuite(verdict=combine([c.verdict for c in checks.values()]), after_score=cand.score,
                                       checks=checks)
    verdict = combine([s.verdict for s in suites.values()])
    if verdict is Verdict.passed:
        summary = f"all {len(suites)} inherited suites keep the parent's level"
    else:
        reasons = [f"{s}: {c.reason}" for s, e in suites.items()
                   for c in (e.checks.values() if e.checks else [e]) if c.verdict == verdict]
        summary = f"{verdict.value} — " + "; ".join(reasons)
    return result(NAME, verdict, policy.blocking, summary, InheritanceEvidence(
        thresholds=thresholds, baselines={r: ctx.baselines.get(r) for r in (PARENT, PREVIOUS)}, suites=suites))
