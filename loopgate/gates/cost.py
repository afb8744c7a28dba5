"""Cost gate: serving budgets, absolute and relative to the version the release replaces.

Figures come from the candidate's profile (params, and whatever cost figures the loop put there) and,
for anything the profile lacks, from :func:`loopgate.evaluate.metrics.cost_summary` over the candidate's
generation and safety evaluations; the baseline (production, else previous) is built the same way.

Each configured budget is one check, listed in the evidence as figure vs limit. A figure that was not
measured (e.g. a line with multiple-choice suites only has no latency) is skipped and listed as such,
and a ratio check without a baseline (first release) is skipped; the gate fails when any check fails,
and is inconclusive only when budgets are set but not one of them could be checked.
"""

from __future__ import annotations

from typing import Any

from loopgate.evaluate.metrics import cost_summary
from loopgate.gates.context import GateContext, combine, result
from loopgate.records import Evaluation, GateResult, Verdict
from loopgate.spec import CostPolicy

NAME = "cost"

# (figure, absolute-limit field, is the limit a minimum, ratio-limit field)
_BUDGETS: tuple[tuple[str, str | None, bool, str | None], ...] = (
    ("latency_p95_ms", "max_latency_p95_ms", False, "max_latency_p95_ratio"),
    ("tokens_per_s", "min_tokens_per_s", True, None),
    ("mean_output_tokens", "max_mean_output_length", False, "max_mean_output_length_ratio"),
    ("peak_memory_mb", "max_peak_memory_mb", False, None),
    ("cost_per_1k_requests", "max_cost_per_1k_requests", False, "max_cost_per_1k_ratio"),
)


def _figures(profile: dict[str, float], evals: dict[str, Evaluation], price: float | None) -> dict[str, float]:
    """Profile figures, completed from the evaluations' engine figures (the profile wins)."""
    return {**cost_summary(evals.values(), price_per_hour=price), **profile}


def cost(ctx: GateContext, policy: CostPolicy, price_per_hour: float | None = None) -> GateResult:
    """Latency, throughput, output length, memory, parameter growth and money budgets."""
    price = price_per_hour if price_per_hour is not None else ctx.price_per_hour
    cand = _figures(ctx.candidate_profile, ctx.candidate_evals, price)
    base_role = ctx.replaced_baseline()
    base: dict[str, float] | None = None
    if base_role is not None:
        role = base_role[0]
        base = _figures(ctx.baseline_profiles.get(role, {}), ctx.baseline_evals.get(role, {}), price)
    limits = policy.model_dump(exclude={"blocking"})
    checks: list[dict[str, Any]] = []

    def check(figure: str, kind: str, limit: float, value: float | None, minimum: bool = False,
              baseline: float | None = None) -> None:
        row: dict[str, Any] = {"figure": figure, "kind": kind, "limit": limit, "value": value}
        if baseline is not None:
            row["baseline"] = baseline
        if value is None:
            row["verdict"], row["note"] = "skipped", "not measured"
        elif minimum:
            row["verdict"] = Verdict.passed if value >= limit else Verdict.failed
        else:
            row["verdict"] = Verdict.passed if value <= limit else Verdict.failed
        checks.append(row)

    for figure, abs_field, minimum, ratio_field in _BUDGETS:
        value = cand.get(figure)
        if abs_field and limits[abs_field] is not None:
            check(figure, "absolute", limits[abs_field], value, minimum)
        if ratio_field and limits[ratio_field] is not None:
            ref = base.get(figure) if base else None
            if value is None or ref is None or ref <= 0:
                checks.append({"figure": figure, "kind": "ratio", "limit": limits[ratio_field], "value": None,
                               "baseline": ref, "verdict": "skipped",
                               "note": "no baseline" if base is None or ref is None else "not measured"})
            else:
                check(figure, "ratio", limits[ratio_field], value / ref, baseline=ref)
    if policy.max_param_growth is not None:
        p, ref = cand.get("params"), base.get("params") if base else None
        if p is None or not ref:
            checks.append({"figure": "params", "kind": "growth", "limit": policy.max_param_growth, "value": None,
                           "baseline": ref, "verdict": "skipped", "note": "no baseline" if p else "not measured"})
        else:
            check("params", "growth", policy.max_param_growth, (p - ref) / ref, baseline=ref)

    judged = [c for c in checks if c["verdict"] != "skipped"]
    if not checks:
        verdict, summary = Verdict.passed, "no cost budgets configured"
    elif not judged and all(c.get("note") == "no baseline" for c in checks):
        # a first release has nothing to be relative to; with no absolute budget there is nothing to hold
        verdict, summary = Verdict.passed, "first release: no baseline for the relative budgets"
    elif not judged:
        verdict, summary = Verdict.inconclusive, "cost budgets are set but no figure was measured"
    else:
        verdict = combine([c["verdict"] for c in judged])
        failed = [c for c in judged if c["verdict"] is Verdict.failed]
        summary = (f"{len(judged)} budgets hold ({len(checks) - len(judged)} skipped)" if not failed else
                   "over budget: " + "; ".join(f"{c['figure']} {c['kind']} {c['value']:.4g} vs limit {c['limit']}"
                                               for c in failed))
    return result(NAME, verdict, policy.blocking, summary, candidate=cand, baseline=base,
                  baseline_version=base_role[1] if base_role else None, checks=checks, thresholds=limits)
