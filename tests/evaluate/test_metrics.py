"""Each release metric against a case computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from loopgate.evaluate.metrics import (
    accuracy_matrix,
    backward_transfer,
    bootstrap_ci,
    cost_per_1k_requests,
    cost_summary,
    forgetting,
    forward_transfer,
    mcnemar_exact,
    negative_flip_rate,
    paired_comparison,
    positive_flip_rate,
    refusal_rate,
    safe_flips,
    safety_flip_rate,
    safety_flips,
    wilson_interval,
)
from loopgate.records import Evaluation, ExampleResult


def _ev(correct: list[int], version: str = "v", suite: str = "s", ids: list[str] | None = None,
        **kw: object) -> Evaluation:
    ids = ids or [str(i) for i in range(len(correct))]
    ex = [ExampleResult(id=i, correct=bool(c), score=float(c)) for i, c in zip(ids, correct, strict=True)]
    return Evaluation(version=version, suite=suite, suite_sha256="x", kind="generation", n=len(ex),
                      score=sum(correct) / max(1, len(correct)), examples=ex, **kw)  # type: ignore[arg-type]


def test_wilson_interval_matches_hand_computation() -> None:
    # p = 0.8, n = 10, z = 1.96: centre 0.71675, half-width 0.22658
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_bootstrap_ci_is_deterministic_and_degenerate_on_constants() -> None:
    assert bootstrap_ci([0.7] * 12) == pytest.approx((0.7, 0.7))
    values = [0, 1] * 50
    low, high = bootstrap_ci(values, seed=3)
    assert (low, high) == bootstrap_ci(values, seed=3)
    # mean 0.5, standard error 0.05 → a 95 % interval of about ±0.098
    assert low == pytest.approx(0.40, abs=0.02) and high == pytest.approx(0.60, abs=0.02)
    with pytest.raises(ValueError):
        bootstrap_ci([])


def test_mcnemar_exact_matches_binomial_tails() -> None:
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 0) == pytest.approx(2 / 32)  # 2 × 0.5^5
    assert mcnemar_exact(1, 3) == pytest.approx(2 * (1 + 4) / 16)  # 2 × P(X ≤ 1), X ~ Bin(4, ½)
    assert mcnemar_exact(3, 1) == mcnemar_exact(1, 3)
    assert mcnemar_exact(3, 3) == 1.0
    assert mcnemar_exact(6, 0) < 0.05 < mcnemar_exact(5, 0)


def test_flip_rates_and_paired_comparison() -> None:
    before = _ev([1, 1, 1, 0, 0], version="a")
    after = _ev([1, 0, 1, 1, 0], version="b")
    assert negative_flip_rate(before, after) == pytest.approx(1 / 5)
    assert positive_flip_rate(before, after) == pytest.approx(1 / 5)
    cmp = paired_comparison(before, after)
    assert (cmp.n, cmp.before_score, cmp.after_score, cmp.delta) == (5, 0.6, 0.6, 0.0)
    assert cmp.negative_flip_ids == ["1"] and cmp.positive_flip_ids == ["3"]
    assert cmp.mcnemar_p == 1.0
    assert cmp.ci_low <= 0.0 <= cmp.ci_high


def test_paired_comparison_joins_by_id_and_sees_a_real_drop() -> None:
    before = _ev([1] * 40, ids=[f"q{i}" for i in range(40)])
    # the candidate misses 10 and its evaluation holds one extra item the baseline never saw
    after = _ev([0] * 10 + [1] * 31, ids=[f"q{i}" for i in range(40)] + ["new"])
    cmp = paired_comparison(before, after)
    assert cmp.n == 40 and cmp.delta == pytest.approx(-0.25)
    assert cmp.negative_flips == 10 and cmp.positive_flips == 0
    assert cmp.mcnemar_p == pytest.approx(2 / 2**10)
    assert cmp.ci_high < 0


def test_paired_comparison_without_overlap_is_uninformative() -> None:
    cmp = paired_comparison(_ev([1], ids=["a"]), _ev([0], ids=["b"]))
    assert cmp.n == 0 and (cmp.ci_low, cmp.ci_high) == (-1.0, 1.0) and cmp.mcnemar_p == 1.0


def _safety(refused: list[int], expect: list[str], version: str) -> Evaluation:
    ex = [ExampleResult(id=f"p{i}", prompt=f"prompt {i}", output="I cannot help" if r else "sure",
                        correct=bool(r) == (e == "refuse"), refused=bool(r), expect=e, category=f"c{i % 2}")
          for i, (r, e) in enumerate(zip(refused, expect, strict=True))]
    return Evaluation(version=version, suite="safe", suite_sha256="x", kind="safety", n=len(ex),
                      score=sum(x.correct for x in ex) / len(ex), examples=ex)


def test_safety_flips_are_the_unsafe_direction_only() -> None:
    expect = ["refuse", "refuse", "refuse", "refuse", "comply"]
    before = _safety([1, 1, 0, 1, 0], expect, "a")
    # p0 now complies (unsafe flip), p2 now refuses (safe flip), p4 over-refuses (not a safety flip)
    after = _safety([0, 1, 1, 1, 1], expect, "b")
    flips = safety_flips(before, after)
    assert [f.id for f in flips] == ["p0"]
    assert flips[0].prompt == "prompt 0" and flips[0].category == "c0"
    assert flips[0].before_output == "I cannot help" and flips[0].after_output == "sure"
    assert safe_flips(before, after) == 1
    assert safety_flip_rate(before, after) == pytest.approx(1 / 4)
    assert refusal_rate(before) == pytest.approx(3 / 4)
    assert refusal_rate(after) == pytest.approx(3 / 4)


def test_accuracy_matrix_forgetting_bwt_fwt() -> None:
    r = np.array([[0.9, 0.4, 0.3],
                  [0.7, 0.8, 0.5],
                  [0.6, 0.7, 0.9]])
    evs = [Evaluation(version=f"v{i}", suite=f"s{j}", suite_sha256="x", kind="generation", n=10, score=r[i, j])
           for i in range(3) for j in range(3)]
    m = accuracy_matrix(evs, ["v0", "v1", "v2"], ["s0", "s1", "s2", "s3"])
    assert np.allclose(m[:, :3], r) and np.isnan(m[:, 3]).all()
    # forgetting: s0 max(0.9, 0.7) − 0.6; s1 max(0.4, 0.8) − 0.7; s2 max(0.3, 0.5) − 0.9
    assert np.allclose(forgetting(r), [0.3, 0.1, -0.4])
    # BWT: mean(0.6 − 0.9, 0.7 − 0.8)
    assert backward_transfer(r) == pytest.approx(-0.2)
    # FWT vs baseline [0.5, 0.3, 0.2]: mean(R[0][1] − 0.3, R[1][2] − 0.2) = mean(0.1, 0.3)
    assert forward_transfer(r, [0.5, 0.3, 0.2]) == pytest.approx(0.2)
    # a line whose suites were all learned by the first version: BWT = mean(R[T] − R[0])
    assert backward_transfer(r, learned_at=[0, 0, 0]) == pytest.approx(np.mean([-0.3, 0.3, 0.6]))
    assert math.isnan(forward_transfer(r, [0, 0, 0], learned_at=[0, 0, 0]))
    assert np.isnan(forgetting(r[:1])).all()


def test_cost_per_1k_requests() -> None:
    # 0.36 s per request at 1 per hour: 1000 × 0.36 / 3600
    assert cost_per_1k_requests(0.36, 1.0) == pytest.approx(0.1)


def test_cost_summary_aggregates_generation_and_safety_only() -> None:
    gen = Evaluation(version="v", suite="g", suite_sha256="x", kind="generation", n=30, score=0.5,
                     metrics={"latency_p50_ms": 10.0, "latency_p95_ms": 20.0, "tokens_per_s": 100.0,
                              "mean_output_tokens": 4.0, "peak_memory_mb": 50.0, "wall_s": 3.0})
    safe = Evaluation(version="v", suite="s", suite_sha256="x", kind="safety", n=10, score=0.5,
                      metrics={"latency_p50_ms": 30.0, "latency_p95_ms": 40.0, "tokens_per_s": 200.0,
                               "mean_output_tokens": 8.0, "peak_memory_mb": 70.0, "wall_s": 1.0})
    choice = Evaluation(version="v", suite="c", suite_sha256="x", kind="choice", n=1000, score=0.5,
                        metrics={"latency_p95_ms": 999.0, "wall_s": 100.0})
    out = cost_summary([gen, safe, choice], params=1000, price_per_hour=3.6)
    assert out["n_requests"] == 40
    assert out["latency_p95_ms"] == pytest.approx((20 * 30 + 40 * 10) / 40)  # 25
    assert out["tokens_per_s"] == pytest.approx(125.0)
    assert out["mean_output_tokens"] == pytest.approx(5.0)
    assert out["peak_memory_mb"] == 70.0 and out["wall_s"] == 4.0 and out["params"] == 1000
    assert out["seconds_per_request"] == pytest.approx(0.1)
    assert out["cost_per_1k_requests"] == pytest.approx(1000 * 0.1 * 3.6 / 3600)  # 0.1


def test_cost_summary_pools_per_example_latencies() -> None:
    ex = [ExampleResult(id=str(i), correct=True, latency_ms=float(i + 1), output_tokens=2) for i in range(20)]
    ev = Evaluation(version="v", suite="g", suite_sha256="x", kind="generation", n=20, score=1.0, examples=ex,
                    metrics={"latency_p95_ms": 1e6})
    out = cost_summary([ev])
    assert out["latency_p50_ms"] == pytest.approx(10.5)
    assert out["latency_p95_ms"] == pytest.approx(np.percentile(np.arange(1, 21), 95))
    assert out["latency_per_token_p50_ms"] == pytest.approx(5.25)
    assert out["seconds_per_request"] == pytest.approx(0.0105)
    assert "cost_per_1k_requests" not in out  # no price, no money figure


def test_wilson_interval_always_contains_the_observed_rate() -> None:
    for n in (1, 7, 60, 1000):
        for k in (0, n // 3, n):
            low, high = wilson_interval(k, n)
            assert low <= k / n <= high


def test_a_perplexity_suite_reads_higher_is_better_in_the_forgetting_matrix() -> None:
    """Bits per byte falls as a version gets better; the matrix (and a tuning objective) reads it as 2^(−bpb), so
    a rise in bits per byte is forgetting, not progress."""
    from loopgate.evaluate.metrics import accuracy_matrix, forgetting, goodness

    evs = [Evaluation(version=v, suite="prose", suite_sha256="x", kind="perplexity", n=4, score=bpb)
           for v, bpb in (("v1", 1.0), ("v2", 3.0))]
    assert goodness(evs[0]) == pytest.approx(0.5) and goodness(evs[1]) == pytest.approx(0.125)
    r = accuracy_matrix(evs, ["v1", "v2"], ["prose"])
    assert forgetting(r)[0] == pytest.approx(0.375)  # positive: v2 lost what v1 held
    gen = _ev([1, 0])
    assert goodness(gen) == gen.score
