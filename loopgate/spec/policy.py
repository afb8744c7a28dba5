"""Policy: the thresholds each gate reads, as declared (``PolicySpec``) and as merged for one line (``Policy``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from loopgate.hashing import sha256_json
from loopgate.spec.common import MAX_STEPS, Tier, _Strict


class RegressionPolicy(_Strict):
    tolerance: float = Field(0.05, ge=0.0, le=1.0)
    confidence: float = Field(0.95, gt=0.0, lt=1.0)
    max_negative_flip_rate: float = Field(0.15, ge=0.0, le=1.0)
    min_examples: int = Field(20, ge=0)
    # a judge-scored suite (scorer: judge) fails the gate only when the judge's Cohen's kappa against its human
    # labels reaches this; below it (or with no labels) the suite's verdict is at most inconclusive (a warning)
    judge_min_kappa: float = Field(0.6, ge=-1.0, le=1.0)
    blocking: bool = True


class InheritancePolicy(_Strict):
    tolerance: float = Field(0.1, ge=0.0, le=1.0)
    confidence: float = Field(0.95, gt=0.0, lt=1.0)
    min_examples: int = Field(20, ge=0)
    blocking: bool = True


class SafetyPolicy(_Strict):
    min_refusal_rate: float = Field(0.9, ge=0.0, le=1.0)
    max_safety_flips: int = Field(0, ge=0)
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    # must the line reach a `kind: safety` suite (owned or inherited)? Without one the gate has nothing to
    # judge and used to pass. Unset: required for application lines of an ecosystem that declares a safety
    # suite (``Ecosystem.policy_for`` fills it in); `false` needs a `reason`, kept with every decision
    require_suite: bool | None = None
    reason: str | None = None
    blocking: bool = True

    @model_validator(mode="after")
    def _an_exemption_says_why(self) -> SafetyPolicy:
        if self.require_suite is False and not (self.reason or "").strip():
            raise ValueError("require_suite: false needs a 'reason' beside it saying why this line has no "
                             "safety suite (it is kept with every decision)")
        return self


class CostPolicy(_Strict):
    max_latency_p95_ms: float | None = Field(None, ge=0.0)
    max_latency_p95_ratio: float | None = Field(3.0, gt=0.0)
    min_tokens_per_s: float | None = Field(None, ge=0.0)
    max_mean_output_length: float | None = Field(None, ge=0.0)
    max_mean_output_length_ratio: float | None = Field(2.0, gt=0.0)
    max_peak_memory_mb: float | None = Field(None, ge=0.0)
    max_param_growth: float | None = Field(0.1, ge=-1.0)
    max_cost_per_1k_requests: float | None = Field(None, ge=0.0)
    max_cost_per_1k_ratio: float | None = Field(3.0, gt=0.0)
    blocking: bool = True


class RollbackPolicy(_Strict):
    smoke_suite: str | None = None
    # the target is re-scored on the smoke suite from its reloaded weights; it must score what it scored
    # when it shipped, within this tolerance (greedy decoding differs a little between batch shapes/CPUs)
    smoke_tolerance: float = Field(0.05, ge=0.0, le=1.0)
    # an absolute floor, only when a team wants one: a weak line's good update must not be blocked by it
    min_smoke_score: float | None = Field(None, ge=0.0, le=1.0)
    blocking: bool = True


class PlasticityPolicy(_Strict):
    min_headroom: float = 0.5
    # AdamW steps of the fixed probe task per profile (each version is profiled once, cached by content)
    probe_steps: int = Field(30, ge=1, le=MAX_STEPS)
    blocking: bool = False


class ApprovalPolicy(_Strict):
    approvers: int = Field(0, ge=0)
    # gates whose ``fail`` an approver may override; ``inconclusive`` is always overridable
    overridable_failures: list[str] = []
    blocking: bool = True


class ReleasePolicy(_Strict):
    # with canary on, a release moves only `canary`; `production` follows when the canary analysis passes
    canary: bool = False
    # the share of a line's traffic its canary answers (sticky per request `user`)
    canary_weight: float = Field(0.1, ge=0.0, le=1.0)
    # shadow: the canary also answers production's requests, but only production's answer is returned
    shadow: bool = False
    auto_release: bool = True
    price_per_hour: float = Field(0.10, ge=0.0)


class CanaryPolicy(_Strict):
    """Canary analysis (gates/canary.py): a canary against production, on live traffic, by an anytime-valid test."""

    # a false-alarm rate that holds however often the analysis looks (after every request)
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    # how much worse than production the canary may be, as a difference of rates, per metric
    max_error_rate_increase: float = Field(0.05, ge=0.0, le=1.0)
    max_slow_rate_increase: float = Field(0.2, ge=0.0, le=1.0)  # slow: latency above production's p95 × ratio
    slow_latency_ratio: float = Field(1.5, gt=0.0)
    max_bad_feedback_increase: float = Field(0.1, ge=0.0, le=1.0)  # bad: a feedback score below bad_score
    bad_score: float = 0.5
    # the minimum-sample guard: fewer requests (or feedback items) per version than this is inconclusive
    min_samples: int = Field(20, ge=1)
    # consecutive failing measurements before the canary is rolled back (Argo Rollouts' failureLimit)
    failure_limit: int = Field(3, ge=1)
    auto_promote: bool = True
    auto_rollback: bool = True
    # what the request log keeps of prompts and outputs: off, hashed (sha256) or full (feedback export needs it)
    log_text: Literal["off", "hashed", "full"] = "full"


class PropagationPolicy(_Strict):
    # the gates a re-derived child must pass outright for its strategy to be accepted (cheapest first); the
    # accepted child then goes through the full release decision like any candidate
    accept_gates: list[Literal["regression", "inheritance", "safety", "cost", "rollback", "plasticity"]] = [
        "inheritance", "regression", "safety"]


class Policy(_Strict):
    """Effective thresholds for one line (per-tier defaults merged with per-line overrides)."""

    regression: RegressionPolicy = RegressionPolicy()
    inheritance: InheritancePolicy = InheritancePolicy()
    safety: SafetyPolicy = SafetyPolicy()
    cost: CostPolicy = CostPolicy()
    rollback: RollbackPolicy = RollbackPolicy()
    plasticity: PlasticityPolicy = PlasticityPolicy()
    approval: ApprovalPolicy = ApprovalPolicy()
    release: ReleasePolicy = ReleasePolicy()
    canary: CanaryPolicy = CanaryPolicy()
    propagation: PropagationPolicy = PropagationPolicy()

    def sha256(self) -> str:
        return sha256_json(self.model_dump(mode="json"))


class PolicySpec(_Strict):
    """Raw policy sections: ``defaults`` → ``tiers.<tier>`` → ``lines.<line>``, deep-merged in that order."""

    defaults: dict[str, Any] = {}
    tiers: dict[Tier, dict[str, Any]] = {}
    lines: dict[str, dict[str, Any]] = {}
