"""Cost gate: each budget, absolute and relative to the baseline, listed as figure vs limit."""

from __future__ import annotations

from gate_helpers import context, ev

from loopgate.gates import cost
from loopgate.records import Verdict
from loopgate.spec import CostPolicy


def _metrics(out_tokens: float = 5.0, p95: float = 20.0, tps: float = 100.0) -> dict[str, float]:
    return {"latency_p50_ms": p95 / 2, "latency_p95_ms": p95, "tokens_per_s": tps, "mean_output_tokens": out_tokens,
            "peak_memory_mb": 100.0, "wall_s": 2.0}


def _ctx(cand: dict[str, float], base: dict[str, float] | None, cand_params: float = 1e6,
         base_params: float = 1e6):  # type: ignore[no-untyped-def]
    kw: dict[str, object] = {}
    if base is not None:
        kw = {"baselines": {"production": "support@2"},
              "baseline_evals": {"production": {"faq": ev("faq", [1] * 20, metrics=base)}},
              "baseline_profiles": {"production": {"params": base_params}}}
    return context(candidate_evals={"faq": ev("faq", [1] * 20, "support@3", metrics=cand)},
                   candidate_profile={"params": cand_params}, price_per_hour=1.0, **kw)


def _check(r, figure: str, kind: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    return next(c for c in r.evidence["checks"] if c["figure"] == figure and c["kind"] == kind)


def test_within_budgets_passes_and_lists_every_check() -> None:
    r = cost(_ctx(_metrics(), _metrics()), CostPolicy())
    assert r.verdict is Verdict.passed, r.summary
    assert _check(r, "latency_p95_ms", "ratio") == {"figure": "latency_p95_ms", "kind": "ratio", "limit": 3.0,
                                                    "value": 1.0, "baseline": 20.0, "verdict": Verdict.passed}
    assert _check(r, "params", "growth")["value"] == 0.0
    # money: 2 s wall / 20 requests = 0.1 s per request at 1 per hour → 1000 × 0.1 / 3600
    assert r.evidence["candidate"]["cost_per_1k_requests"] == 100 / 3600


def test_tripled_output_length_fails() -> None:
    r = cost(_ctx(_metrics(out_tokens=15.0), _metrics(out_tokens=5.0)), CostPolicy())
    assert r.verdict is Verdict.failed
    check = _check(r, "mean_output_tokens", "ratio")
    assert check["value"] == 3.0 and check["limit"] == 2.0 and check["verdict"] is Verdict.failed
    assert "mean_output_tokens ratio 3 vs limit 2.0" in r.summary


def test_absolute_budgets() -> None:
    policy = CostPolicy(max_latency_p95_ms=10.0, min_tokens_per_s=200.0, max_cost_per_1k_requests=0.01)
    r = cost(_ctx(_metrics(), _metrics()), policy)
    assert r.verdict is Verdict.failed
    failed = {(c["figure"], c["kind"]) for c in r.evidence["checks"] if c["verdict"] is Verdict.failed}
    assert failed == {("latency_p95_ms", "absolute"), ("tokens_per_s", "absolute"),
                      ("cost_per_1k_requests", "absolute")}


def test_parameter_growth_beyond_the_limit_fails() -> None:
    r = cost(_ctx(_metrics(), _metrics(), cand_params=1.2e6), CostPolicy())
    assert r.verdict is Verdict.failed
    assert _check(r, "params", "growth")["value"] == 0.2


def test_first_release_skips_ratio_checks() -> None:
    r = cost(_ctx(_metrics(out_tokens=50.0), None), CostPolicy(max_peak_memory_mb=500.0))
    assert r.verdict is Verdict.passed
    assert _check(r, "mean_output_tokens", "ratio")["note"] == "no baseline"
    assert _check(r, "peak_memory_mb", "absolute")["verdict"] is Verdict.passed


def test_budgets_but_nothing_measured_is_inconclusive() -> None:
    r = cost(context(), CostPolicy())
    assert r.verdict is Verdict.inconclusive


def test_profile_figures_win_over_evaluation_figures() -> None:
    ctx = _ctx(_metrics(), _metrics())
    ctx = ctx.model_copy(update={"candidate_profile": {"params": 1e6, "latency_p95_ms": 100.0}})
    r = cost(ctx, CostPolicy())
    assert _check(r, "latency_p95_ms", "ratio")["value"] == 5.0 and r.verdict is Verdict.failed
