"""What the gates judge: one immutable bundle of facts about a candidate, gathered by the loop.

The loop does all the I/O (evaluating, profiling, checking the rollback target, reading approvals) and
hands the gates this context; every gate is then a pure function ``(GateContext, policy section) →
GateResult``, testable in milliseconds.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from loopgate.gates.evidence import Evidence
from loopgate.records import Evaluation, GateResult, ServingCost, Verdict

# baseline roles
PRODUCTION = "production"  # the line's current production version (what the release would replace)
PREVIOUS = "previous"  # the line's previous version (the one the candidate was built from)
PARENT = "parent"  # the parent line's production version (what the candidate must keep up with)
FOUNDATION = "foundation"  # the line's foundation ancestor: the plasticity reference (profiles only)

# suites whose outputs are served text (multiple choice produces none): what cost is judged on
COST_KINDS = ("generation", "safety")

# at most this many example ids / prompts per list in the evidence; counts are always complete
MAX_EVIDENCE_ITEMS = 100


class RollbackCheck(BaseModel):
    """Facts about the version a release would replace, gathered by the loop (target None: first release)."""

    target: str | None = None
    exists: bool = False
    hashes_ok: bool = False
    loads: bool = False
    smoke_suite: str | None = None
    # the target's score on the smoke suite re-measured now from its reloaded weights (no cache) …
    smoke_score: float | None = None
    # … and the score recorded for it when it was evaluated for its own release
    recorded_smoke_score: float | None = None
    error: str | None = None


class ApprovalRecord(BaseModel):
    """One approval of a release, optionally overriding named gates, with its reason."""

    approver: str
    reason: str = ""
    overrides: list[str] = []


class GateContext(BaseModel):
    """Everything the gates judge about one candidate version of one line."""

    line: str
    tier: str = ""
    candidate: str
    requester: str = "loopgate"
    owned_suites: list[str] = []
    inherited_suites: list[str] = []
    # suites of kind "safety" among owned + inherited
    safety_suites: list[str] = []
    candidate_evals: dict[str, Evaluation] = {}
    # role (production / previous / parent) → version id, None when the line has none
    baselines: dict[str, str | None] = {}
    # role → suite → evaluation of that baseline
    baseline_evals: dict[str, dict[str, Evaluation]] = {}
    # params, plasticity figures, cost figures of the candidate; the same per role (+ "foundation")
    candidate_profile: dict[str, float] = {}
    baseline_profiles: dict[str, dict[str, float]] = {}
    rollback: RollbackCheck | None = None
    # the line's traffic served by candidate and replaced baseline back to back, per suite (cost gate)
    serving: dict[str, ServingCost] = {}
    approvals: list[ApprovalRecord] = []
    price_per_hour: float | None = None

    def replaced_baseline(self) -> tuple[str, str] | None:
        """(role, version) a same-line comparison is made against: production, else previous, else None."""
        for role in (PRODUCTION, PREVIOUS):
            version = self.baselines.get(role)
            if version:
                return role, version
        return None

    def traffic_suites(self) -> list[str]:
        """The suites that stand for the line's own traffic: its owned generation/safety suites, else (a line
        that owns none) the inherited ones it serves — never both pooled, which dilutes the line's traffic."""
        evals = self.candidate_evals
        owned = [s for s in self.owned_suites if s in evals and evals[s].kind in COST_KINDS]
        return owned or [s for s in self.inherited_suites if s in evals and evals[s].kind in COST_KINDS]

    def baseline_eval(self, role: str, suite: str) -> Evaluation | None:
        return self.baseline_evals.get(role, {}).get(suite)

    def valid_approvers(self) -> list[str]:
        """Distinct approvers other than the requester (two-person rule), in the order they approved."""
        return list(dict.fromkeys(a.approver for a in self.approvals if a.approver != self.requester))


def combine(verdicts: list[Verdict]) -> Verdict:
    """Worst of several verdicts: any fail → fail, else any inconclusive → inconclusive, else pass."""
    if Verdict.failed in verdicts:
        return Verdict.failed
    if Verdict.inconclusive in verdicts:
        return Verdict.inconclusive
    return Verdict.passed


def result(name: str, verdict: Verdict, blocking: bool, summary: str, evidence: Evidence | None = None,
           **extra: Any) -> GateResult:
    """A GateResult whose evidence is the gate's evidence record as stored (:meth:`Evidence.dump`), plus any keyword
    arguments (a gate with no record of its own, e.g. one a test adds)."""
    stored = {**(evidence.dump() if evidence is not None else {}), **extra}
    return GateResult(name=name, verdict=verdict, blocking=blocking, summary=summary, evidence=stored)
