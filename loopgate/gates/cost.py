"""Cost gate: serving budgets on the line's own traffic, absolute and relative to the version it replaces.

Judged per suite, on the suites that stand for the line's traffic (its owned generation and safety suites;
a line that owns none is judged on the inherited suites it serves): pooling owned and inherited suites let
an update that tripled the line's own answers pass on the strength of unchanged inherited ones. Every
suite's figures and ratios are in the evidence.

Where each figure comes from:
- output length (``mean_output_tokens``): the stored evaluations — greedy outputs are deterministic, so a
  cached figure is the real one;
- latency, throughput and money: each request's latency is its answer's length (from the evaluation) times
  the model's time per token, measured by the loop in one process with candidate and baseline doing the same
  work back to back (``GateContext.serving``, :mod:`loopgate.evaluate.serving`). A latency stored with an
  evaluation was measured on another run, machine or load and is never compared; without a back-to-back
  measurement those checks are skipped, and say so;
- parameters and peak memory: the candidate's profile and evaluations (model-level, absolute).

A check without its figure is skipped and listed; a ratio check without a baseline (first release) is
skipped; the gate fails when any check fails, and is inconclusive only when budgets are set but not one of
them could be checked.
"""

from __future__ import annotations

import numpy as np

from loopgate.gates.bounds import below, exceeds
from loopgate.gates.context import COST_KINDS, GateContext, combine, result
from loopgate.gates.evidence import CostCheck, CostEvidence, CostSuite
from loopgate.records import Evaluation, GateResult, ServingCost, Verdict
from loopgate.spec import CostPolicy

NAME = "cost"

# per-suite budgets: (figure, absolute-limit field, is the limit a minimum, ratio-limit field)
_SUITE_BUDGETS: tuple[tuple[str, str | None, bool, str | None], ...] = (
    ("latency_p95_ms", "max_latency_p95_ms", False, "max_latency_p95_ratio"),
    ("tokens_per_s", "min_tokens_per_s", True, None),
    ("mean_output_tokens", "max_mean_output_length", False, "max_mean_output_length_ratio"),
    ("cost_per_1k_requests", "max_cost_per_1k_requests", False, "max_cost_per_1k_ratio"),
)


def _mean_output_tokens(ev: Evaluation | None) -> float | None:
    if ev is None:
        return None
    toks = [x.output_tokens for x in ev.examples if x.output_tokens is not None]
    if toks:
        return sum(toks) / len(toks)
    return ev.metrics.get("mean_output_tokens")


def _suite_figures(ev: Evaluation | None, served: dict[str, float] | None, price: float | None
                   ) -> dict[str, float]:
    """One suite's figures for one model: output length from its evaluation; latency = each answer's tokens
    (an empty answer still costs one step) × the time per token measured back to back."""
    out: dict[str, float] = {}
    length = _mean_output_tokens(ev)
    if length is not None:
        out["mean_output_tokens"] = length
    ms = served.get("ms_per_token") if served else None
    if ms is not None and ev is not None and ms > 0:
        tokens = [max(x.output_tokens or 0, 1) for x in ev.examples] or [max(round(length or 0), 1)]
        latencies = np.asarray(tokens, dtype=float) * ms
        out["ms_per_token"] = ms
        out["latency_p50_ms"] = float(np.percentile(latencies, 50))
        out["latency_p95_ms"] = float(np.percentile(latencies, 95))
        out["tokens_per_s"] = 1000.0 / ms
        out["seconds_per_request"] = float(latencies.mean()) / 1000
        if price is not None:
            out["cost_per_1k_requests"] = 1000 * out["seconds_per_request"] * price / 3600
    return out


def _verdict(value: float, limit: float, minimum: bool) -> Verdict:
    ok = not below(value, limit) if minimum else not exceeds(value, limit)
    return Verdict.passed if ok else Verdict.failed


def cost(ctx: GateContext, policy: CostPolicy, price_per_hour: float | None = None) -> GateResult:
    """Latency, throughput, output length and money budgets per traffic suite; memory and parameter growth."""
    price = price_per_hour if price_per_hour is not None else ctx.price_per_hour
    limits = policy.model_dump(exclude={"blocking"})
    base_role = ctx.replaced_baseline()
    role = base_role[0] if base_role else None
    checks: list[CostCheck] = []
    suites: dict[str, CostSuite] = {}

    def check(figure: str, kind: str, limit: float, value: float | None, *, minimum: bool = False,
              suite: str | None = None, baseline: float | None = None, note: str = "not measured") -> None:
        # optional keys only when known: the stored check has no "suite"/"baseline"/"note" key otherwise
        optional = {"suite": suite, "baseline": baseline}
        row = CostCheck(figure=figure, kind=kind, limit=limit, value=value,
                        **{k: v for k, v in optional.items() if v is not None},
                        verdict="skipped" if value is None else _verdict(value, limit, minimum))
        if value is None:
            row.note = note
        checks.append(row)

    for name in ctx.traffic_suites():
        serving: ServingCost | None = ctx.serving.get(name)
        cand = _suite_figures(ctx.candidate_evals.get(name), serving.candidate if serving else None, price)
        base_ev = ctx.baseline_eval(role, name) if role else None
        base = (_suite_figures(base_ev, serving.baseline if serving else None, price)
                if role and (base_ev is not None or (serving and serving.baseline)) else None)
        suites[name] = CostSuite(candidate=cand, baseline=base, measured_back_to_back=serving is not None)
        for figure, abs_field, minimum, ratio_field in _SUITE_BUDGETS:
            value = cand.get(figure)
            missing = "not measured" if figure == "mean_output_tokens" else "not measured back to back"
            if abs_field and limits[abs_field] is not None:
                check(figure, "absolute", limits[abs_field], value, minimum=minimum, suite=name, note=missing)
            if ratio_field and limits[ratio_field] is not None:
                ref = base.get(figure) if base else None
                if base is None:
                    check(figure, "ratio", limits[ratio_field], None, suite=name, note="no baseline")
                elif value is None or ref is None or ref <= 0:
                    check(figure, "ratio", limits[ratio_field], None, suite=name, baseline=ref, note=missing)
                else:
                    check(figure, "ratio", limits[ratio_field], value / ref, suite=name, baseline=ref)

    # model-level figures: the same whatever the traffic
    cand_evals = [e for e in ctx.candidate_evals.values() if e.kind in COST_KINDS]
    peak = ctx.candidate_profile.get("peak_memory_mb")
    if peak is None:
        peaks = [e.metrics["peak_memory_mb"] for e in cand_evals if "peak_memory_mb" in e.metrics]
        peak = max(peaks) if peaks else None
    if limits["max_peak_memory_mb"] is not None:
        check("peak_memory_mb", "absolute", limits["max_peak_memory_mb"], peak)
    if policy.max_param_growth is not None:
        p = ctx.candidate_profile.get("params")
        ref = ctx.baseline_profiles.get(role, {}).get("params") if role else None
        if p is None or not ref:
            checks.append(CostCheck(figure="params", kind="growth", limit=policy.max_param_growth, value=None,
                                    baseline=ref, verdict="skipped", note="no baseline" if p else "not measured"))
        else:
            check("params", "growth", policy.max_param_growth, (p - ref) / ref, baseline=ref)

    judged = [c for c in checks if not c.skipped]
    if not checks:
        verdict, summary = Verdict.passed, "no cost budgets configured"
    elif not judged and all(c.note == "no baseline" for c in checks):
        # a first release has nothing to be relative to; with no absolute budget there is nothing to hold
        verdict, summary = Verdict.passed, "first release: no baseline for the relative budgets"
    elif not judged:
        verdict, summary = Verdict.inconclusive, "cost budgets are set but no figure was measured"
    else:
        verdict = combine([Verdict(c.verdict) for c in judged])
        failed = [c for c in judged if c.verdict is Verdict.failed]
        summary = (f"{len(judged)} budgets hold ({len(checks) - len(judged)} skipped)" if not failed else
                   "over budget: " + "; ".join(
                       f"{c.figure} {c.kind} {c.value:.4g} vs limit {c.limit}"
                       + (f" on {c.suite}" if c.suite is not None else "") for c in failed))
    return result(NAME, verdict, policy.blocking, summary, CostEvidence(
        suites=suites, traffic_suites=list(suites), baseline_version=base_role[1] if base_role else None,
        checks=checks, thresholds=limits))
