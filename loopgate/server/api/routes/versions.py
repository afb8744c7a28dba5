"""``/versions/{id}…`` and ``/compare``: a version, its lineage, evaluations, decisions, plan and report."""

from __future__ import annotations

from fastapi import APIRouter

from loopgate import loop
from loopgate.loop.evaluation import Comparison
from loopgate.loop.outcomes import Lineage, PlanStep, VersionView
from loopgate.records import Decision, Evaluation
from loopgate.report.content import ReleaseNotes, release_notes
from loopgate.server.api.bodies import VersionDetail
from loopgate.server.api.routes import Api
from loopgate.store.tokens import TokenInfo


def add_routes(r: APIRouter, api: Api) -> None:
    ws, viewer = api.ws, api.viewer

    @r.get("/versions/{version_id}", response_model=VersionDetail)
    def version(version_id: str, _: TokenInfo = viewer) -> VersionDetail:
        v = ws.store.version(version_id)
        chans = ws.store.channels(v.line)
        return VersionDetail(version=VersionView(**v.model_dump(), channels=[c for c, x in chans.items()
                                                                             if x == version_id]),
                             decisions=ws.store.decisions(version_id), approvals=ws.store.approvals(version_id))

    @r.get("/versions/{version_id}/lineage", response_model=Lineage)
    def lineage(version_id: str, _: TokenInfo = viewer) -> Lineage:
        return loop.version_lineage(ws, version_id)

    @r.get("/versions/{version_id}/evaluations", response_model=list[Evaluation])
    def evaluations(version_id: str, _: TokenInfo = viewer) -> list[Evaluation]:
        """The stored evaluations (per-example outcomes included); nothing is run."""
        ws.store.version(version_id)
        return ws.store.evaluations(version_id)

    @r.get("/versions/{version_id}/decisions", response_model=list[Decision])
    def decisions(version_id: str, _: TokenInfo = viewer) -> list[Decision]:
        """Every decision on the version, each gate with its verdict and evidence."""
        ws.store.version(version_id)
        return ws.store.decisions(version_id)

    @r.get("/versions/{version_id}/plan", response_model=list[PlanStep])
    def plan(version_id: str, _: TokenInfo = viewer) -> list[PlanStep]:
        """The downstream wave releasing the version would start (runs nothing)."""
        return loop.plan(ws, version_id)

    @r.get("/versions/{version_id}/report", response_model=ReleaseNotes)
    def report(version_id: str, _: TokenInfo = viewer) -> ReleaseNotes:
        """The release notes' content: suites with paired comparisons, flips, the decision, costs."""
        return release_notes(ws, version_id)

    @r.get("/compare", response_model=Comparison)
    def compare(a: str, b: str, _: TokenInfo = viewer) -> Comparison:
        """Per-suite deltas of B against A with paired intervals (evaluates through the cache if needed)."""
        return loop.compare_versions(ws, a, b)
