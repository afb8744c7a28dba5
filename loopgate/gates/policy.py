"""The policy: run every gate on a candidate and combine the verdicts into one decision.

Combination (Argo-style, counting only blocking gates that were not overridden):
any fail → fail; else any inconclusive → inconclusive; else pass. Non-blocking gates (plasticity by
default) are recorded with their verdicts and change nothing.

Overrides: an approver other than the requester (two-person rule) may name gates in
``ApprovalRecord.overrides``. An ``inconclusive`` gate can always be overridden; a ``fail`` only when
the gate is listed in ``policy.approval.overridable_failures``; the approval gate itself never (that
would let one person approve their own missing approvals). Each accepted override is recorded in the
gate's ``overridden_by`` as "approver: reason"; the gate keeps its own verdict, so the audit trail
shows what was overridden. Refused overrides are listed in the approval gate's evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from loopgate.errors import SpecError
from loopgate.gates.approval import approval
from loopgate.gates.context import GateContext
from loopgate.gates.cost import cost
from loopgate.gates.inheritance import inheritance
from loopgate.gates.plasticity import plasticity
from loopgate.gates.regression import regression
from loopgate.gates.rollback import rollback
from loopgate.gates.safety import safety
from loopgate.records import Decision, GateResult, Verdict
from loopgate.spec import Policy

GATES: dict[str, Callable[[GateContext, Policy], GateResult]] = {
    "regression": lambda ctx, p: regression(ctx, p.regression),
    "inheritance": lambda ctx, p: inheritance(ctx, p.inheritance),
    "safety": lambda ctx, p: safety(ctx, p.safety),
    "cost": lambda ctx, p: cost(ctx, p.cost, ctx.price_per_hour if ctx.price_per_hour is not None
                                else p.release.price_per_hour),
    "rollback": lambda ctx, p: rollback(ctx, p.rollback),
    "plasticity": lambda ctx, p: plasticity(ctx, p.plasticity),
    "approval": lambda ctx, p: approval(ctx, p.approval),
}
NOT_OVERRIDABLE = frozenset({"approval"})


def run_gates(ctx: GateContext, policy: Policy, only: Collection[str] | None = None) -> list[GateResult]:
    """Every gate's result (or only the named gates'), in a fixed order, before overrides."""
    if only is not None:
        unknown = sorted(set(only) - set(GATES))
        if unknown:
            raise SpecError(f"unknown gates {unknown}; gates are {', '.join(GATES)}")
    return [gate(ctx, policy) for name, gate in GATES.items() if only is None or name in only]


def apply_overrides(ctx: GateContext, policy: Policy, results: list[GateResult]) -> list[GateResult]:
    """Record the overrides the rules allow (see module docstring); returns new results."""
    by_name = {r.name: r.model_copy(deep=True) for r in results}
    refused: list[dict[str, str]] = []
    for a in ctx.approvals:
        for name in a.overrides:
            gate = by_name.get(name)
            why = None
            if a.approver == ctx.requester:
                why = "the requester cannot override gates on their own release"
            elif gate is None:
                why = f"no gate named {name!r} (gates: {', '.join(GATES)})"
            elif name in NOT_OVERRIDABLE:
                why = f"the {name} gate cannot be overridden"
            elif gate.verdict is Verdict.passed:
                why = "the gate passed; nothing to override"
            elif gate.verdict is Verdict.failed and name not in policy.approval.overridable_failures:
                why = "a fail can be overridden only for gates in policy approval.overridable_failures"
            if why is None and gate is not None:
                entry = f"{a.approver}: {a.reason}"
                if entry not in gate.overridden_by:
                    gate.overridden_by.append(entry)
            else:
                refused.append({"approver": a.approver, "gate": name, "why": why or ""})
    if refused and "approval" in by_name:
        by_name["approval"].evidence["refused_overrides"] = refused
    return [by_name[r.name] for r in results]


def combine_results(results: list[GateResult]) -> Verdict:
    """Verdict of a decision: blocking, non-overridden gates only; fail > inconclusive > pass."""
    counted = [r.verdict for r in results if r.blocking and not r.overridden_by]
    if Verdict.failed in counted:
        return Verdict.failed
    if Verdict.inconclusive in counted:
        return Verdict.inconclusive
    return Verdict.passed


def decide(ctx: GateContext, policy: Policy, only: Collection[str] | None = None) -> Decision:
    """Run the gates (all, or ``only`` these — e.g. ``policy.propagation.accept_gates`` for a re-derived child)
    on ``ctx`` under ``policy``, apply allowed overrides and combine into a Decision. The one way a candidate
    is decided: releases, propagation's acceptance and tuning trials all come through here."""
    results = apply_overrides(ctx, policy, run_gates(ctx, policy, only))
    return Decision(version=ctx.candidate, verdict=combine_results(results), gates=results,
                    policy_sha256=policy.sha256(), baselines=dict(ctx.baselines), requester=ctx.requester)
