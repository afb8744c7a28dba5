"""Approval gate: the tier's number of approvers, never counting the requester (two-person rule).

Pass with enough distinct approvers other than the requester; inconclusive ("awaiting approval")
otherwise — an approval is missing evidence, not a failure. Approvals the requester gave themselves are
listed as refused in the evidence.
"""

from __future__ import annotations

from loopgate.gates.context import GateContext, result
from loopgate.gates.evidence import ApprovalEvidence
from loopgate.records import GateResult, Verdict
from loopgate.spec import ApprovalPolicy

NAME = "approval"


def approval(ctx: GateContext, policy: ApprovalPolicy) -> GateResult:
    """Enough approvers other than the requester?"""
    valid = ctx.valid_approvers()
    refused = sorted({a.approver for a in ctx.approvals if a.approver == ctx.requester})
    evidence = ApprovalEvidence(required=policy.approvers, requester=ctx.requester, approvers=valid,
                                refused_self_approvals=refused,
                                reasons={a.approver: a.reason for a in ctx.approvals if a.approver in valid})
    if policy.approvers <= 0:
        return result(NAME, Verdict.passed, policy.blocking, "no approval required", evidence)
    if len(valid) >= policy.approvers:
        return result(NAME, Verdict.passed, policy.blocking,
                      f"approved by {', '.join(valid)} ({len(valid)}/{policy.approvers})", evidence)
    note = f"; {ctx.requester} requested the release and cannot approve it" if refused else ""
    return result(NAME, Verdict.inconclusive, policy.blocking,
                  f"awaiting approval: {len(valid)}/{policy.approvers} approvers{note}", evidence)
