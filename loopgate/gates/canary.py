"""Canary analysis: is a canary version worse than production on live traffic? Pure: samples in, verdict out.

Three metrics, each a rate compared between the two versions' traffic since the canary went live:

- ``error_rate``: requests that failed;
- ``slow_rate``: requests slower than ``slow_latency_ratio`` × production's p95 latency (so the latency p95
  comparison becomes a comparison of rates of exceeding one threshold);
- ``bad_feedback_rate``: feedback scores below ``bad_score``.

Each is decided by an anytime-valid confidence sequence for the difference θ = rate(canary) − rate(production),
so the analysis may look after every request without inflating its false-alarm rate. It is the normal-mixture
sequential probability ratio test (mSPRT) of Johari, Koomen, Pekelis and Walsh, "Always Valid Inference:
Continuous Monitoring of A/B Tests" (Operations Research 70(3), 2022; Robbins 1970), inverted into a
confidence sequence: with the estimate θ̂, its variance V = p̂c(1−p̂c)/nc + p̂p(1−p̂p)/np and a normal mixing
distribution N(θ₀, τ²), the mixture likelihood ratio is

    Λ = sqrt(V / (V + τ²)) · exp(τ² (θ̂ − θ₀)² / (2 V (V + τ²)))

and {θ₀ : Λ < 1/α} = θ̂ ± sqrt(V (V + τ²) / τ² · (2 ln(1/α) + ln((V + τ²) / V))), which covers θ at every
sample size at once with probability ≥ 1 − α (asymptotically, as the normal approximation holds). Rates are
estimated with one success and one failure added (Laplace), so an arm with no errors still has a variance.

A metric *fails* when the whole sequence lies above its tolerance (the canary is worse by more than allowed)
and *passes* when it lies below; otherwise, and under ``min_samples`` per version (the minimum-sample guard),
it is inconclusive. A measurement fails if any metric fails and passes if all pass. As in Argo Rollouts'
``failureLimit`` and Flagger's ``threshold``, the analysis fails only after ``failure_limit`` consecutive
failing measurements: one unlucky look does not roll a canary back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel

from loopgate.records import Verdict
from loopgate.spec import CanaryPolicy

NAME = "canary"


class Arm(BaseModel):
    """What one version's traffic showed: per request whether it failed and its latency; the feedback scores."""

    version: str
    errors: list[bool] = []
    latencies_ms: list[float] = []  # of the requests that succeeded
    scores: list[float] = []


class MetricResult(BaseModel):
    name: str
    verdict: Verdict
    canary_n: int
    canary_rate: float
    production_n: int
    production_rate: float
    difference: float
    ci_low: float
    ci_high: float
    tolerance: float
    summary: str


class CanaryAnalysis(BaseModel):
    """The verdict of one measurement and of the analysis so far, with the evidence for both."""

    verdict: Verdict  # the analysis: fail only after failure_limit consecutive failing measurements
    measurement: Verdict  # this look alone
    consecutive_failures: int
    canary: str
    production: str
    metrics: list[MetricResult]
    slow_threshold_ms: float | None
    summary: str

    def evidence(self) -> dict[str, object]:
        return self.model_dump(mode="json")


def confidence_sequence(k_c: int, n_c: int, k_p: int, n_p: int, *, alpha: float, tau: float
                        ) -> tuple[float, float, float]:
    """(θ̂, low, high): the always-valid (1 − α) interval for rate(canary) − rate(production) after
    k_c of n_c and k_p of n_p events (the normal-mixture formula in the module docstring)."""
    p_c = (k_c + 1) / (n_c + 2)
    p_p = (k_p + 1) / (n_p + 2)
    diff = k_c / n_c - k_p / n_p
    var = p_c * (1 - p_c) / n_c + p_p * (1 - p_p) / n_p
    tau2 = tau * tau
    half = math.sqrt(var * (var + tau2) / tau2 * (2 * math.log(1 / alpha) + math.log((var + tau2) / var)))
    return diff, diff - half, diff + half


def _metric(name: str, canary: Sequence[bool], production: Sequence[bool], tolerance: float,
            policy: CanaryPolicy) -> MetricResult:
    n_c, n_p = len(canary), len(production)
    k_c, k_p = sum(canary), sum(production)
    rate_c, rate_p = (k_c / n_c if n_c else 0.0), (k_p / n_p if n_p else 0.0)
    if min(n_c, n_p) < policy.min_samples:
        return MetricResult(name=name, verdict=Verdict.inconclusive, canary_n=n_c, canary_rate=rate_c,
                            production_n=n_p, production_rate=rate_p, difference=rate_c - rate_p,
                            ci_low=-1.0, ci_high=1.0, tolerance=tolerance,
                            summary=f"{min(n_c, n_p)} samples < min_samples {policy.min_samples}")
    # the mixing scale: the differences that matter are of the tolerance's size
    diff, low, high = confidence_sequence(k_c, n_c, k_p, n_p, alpha=policy.alpha, tau=max(tolerance, 0.02))
    if low > tolerance:
        verdict, why = Verdict.failed, f"worse than production by more than {tolerance:g}"
    elif high < tolerance:
        verdict, why = Verdict.passed, f"not worse than production by {tolerance:g} or more"
    else:
        verdict, why = Verdict.inconclusive, f"the interval still straddles the tolerance {tolerance:g}"
    return MetricResult(name=name, verdict=verdict, canary_n=n_c, canary_rate=rate_c, production_n=n_p,
                        production_rate=rate_p, difference=diff, ci_low=max(low, -1.0), ci_high=min(high, 1.0),
                        tolerance=tolerance,
                        summary=f"{name} {rate_c:.3f} vs {rate_p:.3f}, θ ∈ [{low:+.3f}, {high:+.3f}]: {why}")


def analyse(canary: Arm, production: Arm, policy: CanaryPolicy, *, prior_failures: int = 0,
            use_feedback: bool = True) -> CanaryAnalysis:
    """One measurement of ``canary`` against ``production``; ``prior_failures`` is the count of consecutive
    failing measurements before this one. Without ``use_feedback`` (a shadow canary: no user ever sees its
    answers) the feedback metric is left out."""
    slow_ms = (float(np.percentile(production.latencies_ms, 95)) * policy.slow_latency_ratio
               if production.latencies_ms else None)

    def slow(arm: Arm) -> list[bool]:
        return [ms > slow_ms for ms in arm.latencies_ms] if slow_ms is not None else []

    metrics = [
        _metric("error_rate", canary.errors, production.errors, policy.max_error_rate_increase, policy),
        _metric("slow_rate", slow(canary), slow(production), policy.max_slow_rate_increase, policy),
    ]
    if use_feedback:
        metrics.append(_metric("bad_feedback_rate", [s < policy.bad_score for s in canary.scores],
                               [s < policy.bad_score for s in production.scores], policy.max_bad_feedback_increase,
                               policy))
    verdicts = [m.verdict for m in metrics]
    if Verdict.failed in verdicts:
        measurement = Verdict.failed
    elif all(v is Verdict.passed for v in verdicts):
        measurement = Verdict.passed
    else:
        measurement = Verdict.inconclusive
    failures = prior_failures + 1 if measurement is Verdict.failed else 0
    if failures >= policy.failure_limit:
        verdict = Verdict.failed
    elif measurement is Verdict.passed:
        verdict = Verdict.passed
    else:
        verdict = Verdict.inconclusive
    failing = [m.name for m in metrics if m.verdict is Verdict.failed]
    if verdict is Verdict.failed:
        summary = f"fail: {', '.join(failing)} failed {failures} measurements in a row (limit {policy.failure_limit})"
    elif verdict is Verdict.passed:
        summary = "pass: every metric is within its tolerance with confidence"
    elif measurement is Verdict.failed:
        summary = f"inconclusive: {', '.join(failing)} failed ({failures} of {policy.failure_limit} in a row)"
    else:
        summary = "inconclusive: " + "; ".join(m.summary for m in metrics if m.verdict is Verdict.inconclusive)
    return CanaryAnalysis(verdict=verdict, measurement=measurement, consecutive_failures=failures,
                          canary=canary.version, production=production.version, metrics=metrics,
                          slow_threshold_ms=slow_ms, summary=summary)
