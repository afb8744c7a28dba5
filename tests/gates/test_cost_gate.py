"""Cost gate: each budget per traffic suite, absolute and relative to the baseline, listed as figure vs limit."""

from __future__ import annotations

import pytest
from gate_helpers import context, ev

from loopgate.gates import cost
from loopgate.records import Evaluation, ServingCost, Verdict
from loopgate.spec import CostPolicy


def _served(ms_per_token: float = 2.0) -> dict[str, float]:
    return {"ms_per_token": ms_per_token}


def _ev(suite: str, out_tokens: int, version: str = "support@2") -> Evaluation:
    e = ev(suite, [1] * 20, version, metrics={"peak_memory_mb": 100.0, "latency_p95_ms": 1.0})
    return e.model_copy(update={"examples": [x.model_copy(update={"output_tokens": out_tokens})
                                             for x in e.examples]})


def _ctx(cand_tokens: dict[str, int], base_tokens: dict[str, int] | None, *, owned: list[str] | None = None,
         served: dict[str, tuple[dict[str, float], dict[str, float] | None]] | None = None,
         cand_params: float = 1e6, base_params: float = 1e6):  # type: ignore[no-untyped-def]
    owned = owned if owned is not None else ["faq"]
    kw: dict[str, object] = {}
    if base_tokens is not None:
        kw = {"baselines": {"production": "support@2"},
              "baseline_evals": {"production": {s: _ev(s, t) for s, t in base_tokens.items()}},
              "baseline_profiles": {"production": {"params": base_params}}}
    serving = {s: ServingCost(suite=s, rows=20, rounds=2, candidate=c, baseline=b)
               for s, (c, b) in (served or {}).items()}
    return context(candidate_evals={s: _ev(s, t, "support@3") for s, t in cand_tokens.items()},
                   owned_suites=owned, inherited_suites=[s for s in cand_tokens if s not in owned],
                   candidate_profile={"params": cand_params}, price_per_hour=1.0, serving=serving, **kw)


def _check(r, figure: str, kind: str, suite: str | None = "faq") -> dict:  # type: ignore[no-untyped-def,type-arg]
    return next(c for c in r.evidence["checks"] if c["figure"] == figure and c["kind"] == kind
                and c.get("suite") == suite)


def test_within_budgets_passes_and_lists_every_check() -> None:
    r = cost(_ctx({"faq": 5}, {"faq": 5}, served={"faq": (_served(), _served())}), CostPolicy())
    assert r.verdict is Verdict.passed, r.summary
    # latency: 5 tokens × 2 ms per token
    assert _check(r, "latency_p95_ms", "ratio") == {"figure": "latency_p95_ms", "kind": "ratio", "limit": 3.0,
                                                    "value": 1.0, "suite": "faq", "baseline": 10.0,
                                                    "verdict": Verdict.passed}
    assert _check(r, "params", "growth", None)["value"] == 0.0
    # money: 0.01 s per request served at 1 per hour → 1000 × 0.01 / 3600
    assert r.evidence["suites"]["faq"]["candidate"]["cost_per_1k_requests"] == pytest.approx(10 / 3600)
    assert r.evidence["suites"]["faq"]["candidate"]["tokens_per_s"] == 500.0


def test_tripled_output_length_fails() -> None:
    r = cost(_ctx({"faq": 15}, {"faq": 5}), CostPolicy())
    assert r.verdict is Verdict.failed
    check = _check(r, "mean_output_tokens", "ratio")
    assert check["value"] == 3.0 and check["limit"] == 2.0 and check["verdict"] is Verdict.failed
    assert "mean_output_tokens ratio 3 vs limit 2.0 on faq" in r.summary


def test_a_blow_up_on_the_lines_own_suite_is_not_diluted_by_inherited_suites() -> None:
    """Tripled answers on the owned suite fail even though three unchanged inherited suites would pool to 1.5."""
    cand = {"faq": 15, "a": 5, "b": 5, "c": 5}
    base = {"faq": 5, "a": 5, "b": 5, "c": 5}
    r = cost(_ctx(cand, base, owned=["faq"]), CostPolicy())
    assert r.verdict is Verdict.failed and r.evidence["traffic_suites"] == ["faq"]
    assert _check(r, "mean_output_tokens", "ratio")["value"] == 3.0


def test_every_owned_suite_is_judged_and_listed() -> None:
    r = cost(_ctx({"faq": 5, "refunds": 12}, {"faq": 5, "refunds": 4}, owned=["faq", "refunds"]), CostPolicy())
    assert r.verdict is Verdict.failed and set(r.evidence["suites"]) == {"faq", "refunds"}
    assert _check(r, "mean_output_tokens", "ratio", "faq")["verdict"] is Verdict.passed
    assert _check(r, "mean_output_tokens", "ratio", "refunds")["value"] == 3.0


def test_a_line_with_no_own_suites_is_judged_on_the_inherited_traffic_it_serves() -> None:
    r = cost(_ctx({"a": 15}, {"a": 5}, owned=[]), CostPolicy())
    assert r.verdict is Verdict.failed and r.evidence["traffic_suites"] == ["a"]


def test_latency_is_compared_only_when_measured_back_to_back() -> None:
    """Latencies stored with evaluations (other runs, other load) are never compared: the check is skipped."""
    r = cost(_ctx({"faq": 5}, {"faq": 5}), CostPolicy())
    assert _check(r, "latency_p95_ms", "ratio")["note"] == "not measured back to back"
    slow = cost(_ctx({"faq": 5}, {"faq": 5}, served={"faq": (_served(10.0), _served(2.0))}), CostPolicy())
    assert slow.verdict is Verdict.failed and _check(slow, "latency_p95_ms", "ratio")["value"] == 5.0


def test_latency_follows_each_answers_length_at_the_measured_speed() -> None:
    """Same speed, answers twice as long: latency doubles (within the 3× limit), the length check says 2×."""
    r = cost(_ctx({"faq": 10}, {"faq": 5}, served={"faq": (_served(), _served())}), CostPolicy())
    assert _check(r, "latency_p95_ms", "ratio")["value"] == 2.0
    assert _check(r, "mean_output_tokens", "ratio")["value"] == 2.0 and r.verdict is Verdict.passed


def test_absolute_budgets() -> None:
    policy = CostPolicy(max_latency_p95_ms=5.0, min_tokens_per_s=1000.0, max_cost_per_1k_requests=0.001)
    r = cost(_ctx({"faq": 5}, {"faq": 5}, served={"faq": (_served(), _served())}), policy)
    assert r.verdict is Verdict.failed
    failed = {(c["figure"], c["kind"]) for c in r.evidence["checks"] if c["verdict"] is Verdict.failed}
    assert failed == {("latency_p95_ms", "absolute"), ("tokens_per_s", "absolute"),
                      ("cost_per_1k_requests", "absolute")}


def test_parameter_growth_beyond_the_limit_fails() -> None:
    r = cost(_ctx({"faq": 5}, {"faq": 5}, cand_params=1.2e6), CostPolicy())
    assert r.verdict is Verdict.failed
    assert _check(r, "params", "growth", None)["value"] == 0.2


def test_first_release_skips_ratio_checks() -> None:
    r = cost(_ctx({"faq": 50}, None), CostPolicy(max_peak_memory_mb=500.0))
    assert r.verdict is Verdict.passed
    assert _check(r, "mean_output_tokens", "ratio")["note"] == "no baseline"
    assert _check(r, "peak_memory_mb", "absolute", None)["verdict"] is Verdict.passed


def test_budgets_but_nothing_measured_is_inconclusive() -> None:
    r = cost(context(), CostPolicy(max_peak_memory_mb=500.0))
    assert r.verdict is Verdict.inconclusive
