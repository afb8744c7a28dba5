"""The canary analysis as a pure function (gates/canary.py): the always-valid interval, the three verdicts, the
minimum-sample guard and the consecutive-failure limit — in milliseconds, no model, no server."""

from __future__ import annotations

import math
import random

from loopgate.gates.canary import Arm, analyse, confidence_sequence
from loopgate.records import Verdict
from loopgate.spec import CanaryPolicy


def _arm(version: str, n: int, errors: int = 0, bad: int = 0, ms: float = 10.0) -> Arm:
    return Arm(version=version, errors=[i < errors for i in range(n)], latencies_ms=[ms] * (n - errors),
               scores=[0.0 if i < bad else 1.0 for i in range(n)])


def test_the_interval_is_the_inverted_normal_mixture_sprt() -> None:
    """θ₀ on the interval's edge gives a mixture likelihood ratio of exactly 1/α (Johari et al. 2022)."""
    alpha, tau = 0.05, 0.1
    diff, low, high = confidence_sequence(30, 100, 10, 100, alpha=alpha, tau=tau)
    p_c, p_p = 31 / 102, 11 / 102
    v = p_c * (1 - p_c) / 100 + p_p * (1 - p_p) / 100
    for edge in (low, high):
        lam = math.sqrt(v / (v + tau**2)) * math.exp(tau**2 * (diff - edge) ** 2 / (2 * v * (v + tau**2)))
        assert abs(lam - 1 / alpha) < 1e-6
    assert math.isclose(diff, 0.2) and low < diff < high


def test_looking_after_every_request_keeps_false_alarms_under_alpha() -> None:
    """A/A traffic (both versions fail 10 % of requests), analysed after every request up to 400 each: the
    share of runs that ever call the canary worse stays under α — the point of an anytime-valid test (a fixed-n
    interval peeked at 400 times would alarm far more often)."""
    policy = CanaryPolicy(alpha=0.05, max_error_rate_increase=0.0, min_samples=10)

    def alarm_rate(always_valid: bool) -> float:
        rng = random.Random(0)
        runs, alarms = 200, 0
        for _ in range(runs):
            kc = kp = 0
            for n in range(1, 401):
                kc += rng.random() < 0.1
                kp += rng.random() < 0.1
                if n < policy.min_samples:
                    continue
                diff, low, _ = confidence_sequence(kc, n, kp, n, alpha=policy.alpha, tau=0.02)
                if not always_valid:  # the fixed-sample one-sided 95 % interval, peeked at after every request
                    pc, pp = (kc + 1) / (n + 2), (kp + 1) / (n + 2)
                    low = diff - 1.645 * math.sqrt(pc * (1 - pc) / n + pp * (1 - pp) / n)
                if low > 0.0:
                    alarms += 1
                    break
        return alarms / runs

    assert alarm_rate(always_valid=True) < 0.05
    assert alarm_rate(always_valid=False) > 0.15  # what the sequential test protects against


def test_three_verdicts_with_a_minimum_sample_guard_and_a_failure_limit() -> None:
    policy = CanaryPolicy(min_samples=20, failure_limit=3)
    prod = _arm("base@1", 60)
    # too little traffic: inconclusive however bad it looks
    few = analyse(_arm("base@2", 10, bad=10), prod, policy)
    assert few.verdict is Verdict.inconclusive and few.measurement is Verdict.inconclusive
    assert "min_samples" in few.summary and few.consecutive_failures == 0
    # clearly worse feedback: each look fails, the analysis fails on the third in a row
    bad = _arm("base@2", 60, bad=60)
    looks = []
    prior = 0
    for _ in range(3):
        a = analyse(bad, prod, policy, prior_failures=prior)
        looks.append(a.verdict)
        prior = a.consecutive_failures
    assert looks == [Verdict.inconclusive, Verdict.inconclusive, Verdict.failed]
    failed = next(m for m in a.metrics if m.name == "bad_feedback_rate")
    assert failed.verdict is Verdict.failed and failed.ci_low > failed.tolerance
    # a look that does not fail resets the count
    assert analyse(_arm("base@2", 60), prod, policy, prior_failures=2).consecutive_failures == 0
    # as good as production on every metric, with enough samples to rule out the tolerances: pass
    good = analyse(_arm("base@2", 200), _arm("base@1", 200), policy)
    assert good.verdict is Verdict.passed and all(m.verdict is Verdict.passed for m in good.metrics)
    # errors and latency count as well as feedback
    errs = analyse(_arm("base@2", 60, errors=30), prod, policy, prior_failures=2)
    assert errs.verdict is Verdict.failed and "error_rate" in errs.summary
    slow = analyse(_arm("base@2", 60, ms=100.0), prod, policy, prior_failures=2)
    assert slow.verdict is Verdict.failed and "slow_rate" in slow.summary
