"""Serving cost of a candidate against the version it would replace, measured back to back.

Latency is only comparable between runs made on the same machine, under the same load, with the same
batch shape; a cached evaluation's latency was measured under none of those guarantees. So the cost gate's
latency and throughput figures come from here: both models are loaded in one process and the same rows of
each suite are served alternately (candidate, baseline, candidate, baseline, …), keeping each model's best
round — the run least disturbed by whatever else the machine was doing.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from loopgate.evaluate.engine import EngineConfig, evaluate_suite
from loopgate.evaluate.suites import Suite
from loopgate.models import load_model
from loopgate.records import Evaluation, ServingCost

# figures kept from an engine run; latency-like figures keep the minimum over rounds, throughput the maximum
_LOWER_IS_BETTER = ("latency_p50_ms", "latency_p95_ms", "seconds_per_request")
_HIGHER_IS_BETTER = ("tokens_per_s",)


def _figures(ev: Evaluation) -> dict[str, float]:
    m = ev.metrics
    keys = ("latency_p50_ms", "latency_p95_ms", "tokens_per_s", "mean_output_tokens")
    out: dict[str, float] = {k: float(m[k]) for k in keys if k in m}
    if ev.n and "wall_s" in m:
        out["seconds_per_request"] = float(m["wall_s"]) / ev.n
    return out


def _best(rounds: list[dict[str, float]]) -> dict[str, float]:
    best = dict(rounds[0])
    for r in rounds[1:]:
        for k, v in r.items():
            if k in _LOWER_IS_BETTER:
                best[k] = min(best.get(k, v), v)
            elif k in _HIGHER_IS_BETTER:
                best[k] = max(best.get(k, v), v)
    return best


def serving_cost(candidate_dir: str | Path, baseline_dir: str | Path | None, suites: list[Suite], *,
                 rounds: int = 2, max_rows: int = 64, config: EngineConfig | None = None) -> list[ServingCost]:
    """Per suite: the candidate's (and the baseline's) latency, throughput and output length, served in one
    process, alternating models, best of ``rounds``; at most ``max_rows`` rows of each suite (its first)."""
    cfg = config or EngineConfig()
    models: list[Any] = [load_model(candidate_dir)]
    if baseline_dir is not None:
        models.append(load_model(baseline_dir))
    out: list[ServingCost] = []
    for suite in suites:
        sample = replace(suite, rows=suite.rows[:max_rows])
        # one warm-up pass each, so neither model pays first-call allocation inside a measured round
        for m in models:
            evaluate_suite(m.model, m.tokenizer, replace(sample, rows=sample.rows[:4]),
                           version="warmup", config=cfg)
        measured: list[list[dict[str, float]]] = [[] for _ in models]
        for _ in range(rounds):
            for i, m in enumerate(models):
                measured[i].append(_figures(evaluate_suite(m.model, m.tokenizer, sample, version="serving",
                                                           config=cfg)))
        out.append(ServingCost(suite=suite.name, rows=len(sample.rows), rounds=rounds,
                               candidate=_best(measured[0]),
                               baseline=_best(measured[1]) if baseline_dir is not None else None))
    return out
