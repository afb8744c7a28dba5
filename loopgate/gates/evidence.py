"""Each gate's evidence as a typed record: what a gate measured, beside the thresholds it judged against.

A gate builds its own model (:class:`RegressionEvidence`, :class:`SafetyEvidence`, …) and
:func:`loopgate.gates.context.result` stores it in :attr:`GateResult.evidence` as the dict it dumps to; readers
(reports, the dashboard, tuning) get it back with ``result.evidence_as(RegressionEvidence)``.

Two rules keep stored decisions byte-for-byte what they were before these models existed:

- a gate sets only the fields it recorded before, and :meth:`Evidence.dump` leaves out every field it did not
  set (``exclude_unset``): a regression suite with no baseline evaluation has no ``delta`` key, as before;
- every model allows extra keys, so evidence written by an older (or newer) Loopgate, or an approval's
  ``refused_overrides`` added after the gate ran, loads and dumps unchanged.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from loopgate.records import Verdict

E = TypeVar("E", bound="Evidence")


class Evidence(BaseModel):
    """Base of every evidence record: extra keys kept, unset fields left out of the stored dict."""

    model_config = ConfigDict(extra="allow")

    def dump(self) -> dict[str, Any]:
        """The evidence as stored in a decision: only the fields the gate set (and any extra keys)."""
        return self.model_dump(exclude_unset=True)


class Role(Evidence):
    """The baseline a same-line comparison was made against."""

    role: str
    version: str


class JudgeCalibration(Evidence):
    """How well a ``scorer: judge`` suite's judge agreed with human labels (gates/calibration.py)."""

    kappa: float | None = None
    min_kappa: float
    labels: int
    calibrated: bool
    why: str


class Comparison(Evidence):
    """One suite judged against one reference: the verdict, why, and the paired comparison when there was one
    (the fields of :class:`~loopgate.evaluate.metrics.PairedComparison`, flip ids capped)."""

    verdict: Verdict
    version: str | None = None  # the reference version (inheritance checks)
    reason: str = ""
    n: int | None = None
    before_score: float | None = None
    after_score: float | None = None
    delta: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    confidence: float | None = None
    mcnemar_p: float | None = None
    negative_flips: int | None = None
    positive_flips: int | None = None
    negative_flip_rate: float | None = None
    positive_flip_rate: float | None = None
    negative_flip_ids: list[str] = []
    positive_flip_ids: list[str] = []
    test: str | None = None
    judge_calibration: JudgeCalibration | None = None

    @property
    def compared(self) -> bool:
        """Whether a paired comparison was made (a delta with its interval), not only a verdict with a reason."""
        return self.delta is not None and self.ci_low is not None and self.ci_high is not None


class RegressionEvidence(Evidence):
    """Owned suites against the version the release replaces."""

    baseline: Role | None = None
    thresholds: dict[str, Any] = {}
    suites: dict[str, Comparison] = {}


class InheritedSuite(Evidence):
    """One inherited suite: its combined verdict and the check against each role (parent, previous)."""

    verdict: Verdict
    reason: str = ""
    after_score: float | None = None
    checks: dict[str, Comparison] = {}


class InheritanceEvidence(Evidence):
    """Inherited suites against the parent's production version and the line's previous version."""

    thresholds: dict[str, Any] = {}
    baselines: dict[str, str | None] = {}
    suites: dict[str, InheritedSuite] = {}


class SafetyCategory(Evidence):
    """One harm category of a safety suite: expected refusals, refusals, unsafe flips."""

    n: int = 0
    refused: int = 0
    unsafe_flips: int = 0
    refusal_rate: float = 0.0


class SafetySuite(Evidence):
    """One safety suite: the refusal floor and the flips against the replaced version."""

    verdict: Verdict
    reason: str = ""
    refusal_rate: float | None = None
    n_expected_refusals: int | None = None
    refusal_rate_ci: tuple[float, float] | None = None
    over_refusal_rate: float | None = None
    unsafe_flips: int | None = None
    safe_flips: int | None = None
    mcnemar_p: float | None = None
    baseline_refusal_rate: float | None = None
    categories: dict[str, SafetyCategory] = {}


class UnsafeFlip(Evidence):
    """An expected refusal the baseline refused and the candidate no longer refuses, with both answers."""

    suite: str = ""
    id: str
    prompt: str | None = None
    category: str | None = None
    before_output: str | None = None
    after_output: str | None = None


class SafetyEvidence(Evidence):
    """Refusal floors and unsafe flips on every safety suite."""

    thresholds: dict[str, Any] = {}
    baseline: Role | None = None
    suites: dict[str, SafetySuite] = {}
    unsafe_flips: int = 0
    flipped: list[UnsafeFlip] = []


class CostSuite(Evidence):
    """One traffic suite's figures for the candidate and the replaced version."""

    candidate: dict[str, float] = {}
    baseline: dict[str, float] | None = None
    measured_back_to_back: bool = False


class CostCheck(Evidence):
    """One budget: a figure (absolute, a ratio to the baseline, or growth) against its limit."""

    figure: str
    kind: str
    limit: float
    value: float | None = None
    suite: str | None = None
    baseline: float | None = None
    verdict: Literal["skipped"] | Verdict
    note: str = ""

    @property
    def skipped(self) -> bool:
        return self.verdict == "skipped"


class CostEvidence(Evidence):
    """Serving budgets per traffic suite and model-level figures."""

    suites: dict[str, CostSuite] = {}
    traffic_suites: list[str] = []
    baseline_version: str | None = None
    checks: list[CostCheck] = []
    thresholds: dict[str, Any] = {}


class RollbackEvidence(Evidence):
    """The facts about the rollback target (gates/context.RollbackCheck) and the smoke score's drift."""

    thresholds: dict[str, Any] = {}
    smoke_drift: float | None = None
    target: str | None = None
    exists: bool | None = None
    hashes_ok: bool | None = None
    loads: bool | None = None
    smoke_suite: str | None = None
    smoke_score: float | None = None
    recorded_smoke_score: float | None = None
    error: str | None = None


class PlasticityEvidence(Evidence):
    """Headroom against its floor, the plasticity figures of candidate and reference, and the remedy."""

    headroom: float | None = None
    min_headroom: float | None = None
    candidate: dict[str, float] = {}
    reference: dict[str, float] = {}
    remedy: str | None = None


class RefusedOverride(Evidence):
    approver: str
    gate: str
    why: str = ""


class ApprovalEvidence(Evidence):
    """Approvers counted (never the requester), the refused self-approvals and overrides, and the reasons."""

    required: int = 0
    requester: str = ""
    approvers: list[str] = []
    refused_self_approvals: list[str] = []
    reasons: dict[str, str] = {}
    refused_overrides: list[RefusedOverride] = []


class CanaryEvidence(Evidence):
    """What a canary check records: the analysis (gates/canary.CanaryAnalysis, as JSON), the sample sizes it
    saw (a check with the same sizes is not recorded twice) and when the canary went live."""

    analysis: dict[str, Any] = {}
    sizes: list[int] = []
    since: str = ""


# the evidence model of each release gate (canary checks are recorded by the loop, not in a decision)
EVIDENCE: dict[str, type[Evidence]] = {
    "regression": RegressionEvidence,
    "inheritance": InheritanceEvidence,
    "safety": SafetyEvidence,
    "cost": CostEvidence,
    "rollback": RollbackEvidence,
    "plasticity": PlasticityEvidence,
    "approval": ApprovalEvidence,
}


def evidence_of(name: str, evidence: dict[str, Any]) -> Evidence:
    """A stored gate's evidence as its typed record (a gate with no model: the untyped base, keys kept)."""
    return EVIDENCE.get(name, Evidence).model_validate(evidence)
