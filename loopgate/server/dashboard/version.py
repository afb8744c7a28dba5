"""What a version's page and a line's page show: each version's state from production's point of view
(:mod:`loopgate.report.state`), the gates that block a version (the page's banner), its evaluations and
evidence; a line's versions with shipped / blocked marks, its forgetting matrix and cost trend."""

from __future__ import annotations

from pydantic import BaseModel

from loopgate.evaluate.metrics import cost_summary
from loopgate.loop.workspace import Workspace
from loopgate.records import Decision, Evaluation
from loopgate.report.content import latest_by_suite
from loopgate.report.evidence import GateView, Interval, gate_view, lookup_from_store
from loopgate.report.state import LineState, VersionState, classify, line_states, pinned_note, version_state
from loopgate.spec import Tier
from loopgate.store import Approval, ChannelMove, VersionInfo
from loopgate.store.pages import children_of
from loopgate.store.pins import line_pin
from loopgate.store.release_reads import latest_decisions

MAX_VERSIONS = 40


class EvalRow(BaseModel):
    suite: str
    kind: str
    n: int
    score: float
    interval: Interval | None
    refusal_rate: float | None = None


class VersionPage(BaseModel):
    version: VersionInfo
    tier: str
    state: VersionState
    blocked_by: list[GateView]  # the gates named by the state (blocked or held), for the banner
    channels: list[str]
    line_channels: dict[str, str | None]
    evaluations: list[EvalRow]
    decision: Decision | None
    gates: list[GateView]
    decisions: int
    approvals: list[Approval]
    children: list[tuple[str, str]]
    released: bool
    can_approve: bool
    can_promote: bool
    can_release: bool
    can_rollback: bool


def _eval_rows(evals: list[Evaluation]) -> list[EvalRow]:
    rows = []
    for ev in latest_by_suite(evals).values():
        iv = (Interval(label=ev.suite, estimate=ev.score, low=ev.ci_low, high=ev.ci_high, lo_scale=0.0, hi_scale=1.0)
              if ev.ci_low is not None and ev.ci_high is not None else None)
        rows.append(EvalRow(suite=ev.suite, kind=ev.kind, n=ev.n, score=ev.score, interval=iv,
                            refusal_rate=ev.metrics.get("refusal_rate")))
    return sorted(rows, key=lambda r: r.suite)


def version_page(ws: Workspace, version_id: str) -> VersionPage:
    v = ws.store.version(version_id)
    spec = ws.eco.line(v.line)
    chans = ws.store.channels(v.line)
    decisions = ws.store.decisions(version_id)
    decision = decisions[-1] if decisions else None
    lookup = lookup_from_store(ws.store.evaluations)
    gates = [gate_view(g, lookup, version_id) for g in decision.gates] if decision else []
    state = version_state(ws.store, version_id)
    released = chans.get("production") == version_id
    verdict = decision.verdict.value if decision else None
    return VersionPage(
        version=v, tier=spec.tier.value, state=state, blocked_by=[g for g in gates if g.name in state.gates],
        channels=[c for c, x in chans.items() if x == version_id], line_channels=chans,
        evaluations=_eval_rows(ws.store.evaluations(version_id)), decision=decision, gates=gates,
        decisions=len(decisions), approvals=ws.store.approvals(version_id), children=children_of(ws.store, version_id),
        released=released, can_approve=not released and verdict in ("inconclusive", "fail"),
        can_promote=verdict == "pass" and not released, can_release=not released,
        can_rollback=released and ws.store.rollback_target(v.line) is not None)


class LinePage(BaseModel):
    line: str
    tier: str
    parent: str | None
    description: str
    versions: list[str]
    states: list[VersionState]  # one per version, same order
    state: LineState | None  # production's health and the newest candidate (None for an app)
    total_versions: int
    suites: list[str]
    matrix: list[list[float | None]]  # R[version][suite]: the forgetting matrix
    cost: list[dict[str, float]]
    channels: dict[str, str | None]
    rollback_target: str | None
    history: list[ChannelMove]
    children: list[str]


def _states(ws: Workspace, line: str, shown: list[VersionInfo], channels: dict[str, str | None],
            moves: list[ChannelMove]) -> list[VersionState]:
    """Each shown version's state: one read of the newest decisions, the line's moves read once."""
    decisions = latest_decisions(ws.store, [v.id for v in shown])
    stored = line_pin(ws.store, line)
    out = []
    for v in shown:
        pinned = ""
        if channels.get("production") == v.id and v.parent_version:
            pinned = pinned_note(v.parent_version, ws.store.channel(v.parent_version.rpartition("@")[0]))
        if channels.get("production") == v.id and stored is not None:
            pinned = stored.note  # as version_state says it: the pin someone made, who and why
        out.append(classify(v.id, channels, moves, decisions.get(v.id), pinned))
    return out


def line_page(ws: Workspace, line: str) -> LinePage:
    spec = ws.eco.line(line)
    all_versions = ws.store.versions(line) if spec.tier is not Tier.app else []
    shown = all_versions[-MAX_VERSIONS:]
    price = ws.eco.policy_for(line).release.price_per_hour
    scores: list[dict[str, float]] = []
    cost: list[dict[str, float]] = []
    suites: list[str] = []
    for v in shown:
        evals = ws.store.evaluations(v.id)
        latest = latest_by_suite(evals)
        scores.append({s: e.score for s, e in latest.items()})
        suites += [s for s in latest if s not in suites]
        cost.append(cost_summary(evals, price_per_hour=price))
    matrix = [[row.get(s) for s in suites] for row in scores]
    channels = ws.store.channels(line)
    moves = ws.store.channel_history(line)
    return LinePage(line=line, tier=spec.tier.value, parent=spec.parent, description=spec.description,
                    versions=[v.id for v in shown], states=_states(ws, line, shown, channels, moves),
                    state=line_states(ws.store, [line]).get(line) if spec.tier is not Tier.app else None,
                    total_versions=len(all_versions), suites=suites, matrix=matrix, cost=cost, channels=channels,
                    rollback_target=ws.store.rollback_target(line), history=moves[-MAX_VERSIONS:],
                    children=ws.eco.children(line)[:50])
