"""The evidence a gate needs that only a job can measure: the rollback target re-scored from its reloaded weights,
and the line's traffic served by the candidate and the version it replaces. :mod:`loopgate.loop.gating` gathers
them when a decided gate asks (moved here so that gating stays a page you read top to bottom)."""

from __future__ import annotations

from pathlib import Path

from loopgate.errors import ArtifactError, NotFoundError
from loopgate.executors import jobs
from loopgate.gates.context import GateContext, RollbackCheck
from loopgate.loop.evaluation import load_suites
from loopgate.loop.versions import version_ref
from loopgate.loop.workspace import Workspace
from loopgate.models.io import ModelRef
from loopgate.records import ServingCost
from loopgate.spec import CostPolicy


def rollback_check(ws: Workspace, target: str | None, smoke: str | None) -> RollbackCheck:
    """Facts for the rollback-readiness gate: the version a release would replace exists, verifies, loads,
    and — re-scored on the smoke suite from its reloaded weights, bypassing every cache — still scores what
    was recorded for it when it was evaluated for its own release."""
    if target is None:
        return RollbackCheck(target=None)
    try:
        ws.store.version(target)
    except NotFoundError as e:
        return RollbackCheck(target=target, exists=False, error=str(e))
    problems = ws.store.verify_version(target)
    if problems:
        return RollbackCheck(target=target, exists=True, hashes_ok=False, error=problems[0])
    suites = load_suites(ws, [smoke]) if smoke else []
    recorded = ws.store.evaluation(target, suites[0].sha256) if suites else None
    try:
        path = version_ref(ws, target)
        if not suites:
            ws.executor.run(jobs.load_check, model_dir=path)
            return RollbackCheck(target=target, exists=True, hashes_ok=True, loads=True)
        fresh = ws.executor.run(jobs.evaluate, model_dir=path, suites=suites, version=target, cache_dir=None)[0]
    except Exception as e:  # any failure to load or serve means we cannot serve it again
        return RollbackCheck(target=target, exists=True, hashes_ok=True, loads=False, error=str(e))
    return RollbackCheck(target=target, exists=True, hashes_ok=True, loads=True, smoke_suite=smoke,
                         smoke_score=fresh.score, recorded_smoke_score=recorded.score if recorded else None)


def serving_measurements(ws: Workspace, ctx: GateContext, candidate_dir: Path | ModelRef, policy: CostPolicy
                         ) -> dict[str, ServingCost]:
    """The line's traffic served by the candidate and the version it replaces, back to back in one job
    (only when a latency, throughput or money budget asks for it)."""
    traffic = ctx.traffic_suites()
    replaced = ctx.replaced_baseline()
    ratios = (policy.max_latency_p95_ratio, policy.max_cost_per_1k_ratio)
    absolute = (policy.max_latency_p95_ms, policy.min_tokens_per_s, policy.max_cost_per_1k_requests)
    if not traffic or (all(w is None for w in absolute) and (replaced is None or all(w is None for w in ratios))):
        return {}
    baseline_dir = None
    if replaced:
        try:
            baseline_dir = version_ref(ws, replaced[1])
        except ArtifactError:
            # the replaced version's weights are gone: the rollback gate reports that and blocks; the cost
            # gate judges the candidate on what needs no baseline
            return {}
    measured = ws.executor.run(jobs.serving, candidate_dir=candidate_dir, baseline_dir=baseline_dir,
                               suites=load_suites(ws, traffic))
    return {m.suite: m for m in measured}
