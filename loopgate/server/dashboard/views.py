"""What each dashboard page shows, gathered with bounded reads, and the Jinja environment that draws it."""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined
from pydantic import BaseModel

from loopgate.evaluate.metrics import cost_summary
from loopgate.loop.audit import verify
from loopgate.loop.outcomes import AuditReport
from loopgate.loop.workspace import Workspace
from loopgate.records import Decision, Evaluation
from loopgate.report.content import latest_by_suite
from loopgate.report.evidence import GateView, Interval, gate_view, lookup_from_store
from loopgate.report.render import FILTERS, TEMPLATES
from loopgate.server.api import tier_order
from loopgate.spec import Tier
from loopgate.store import Approval, ChannelMove, VersionInfo
from loopgate.store.pages import LedgerPage, LineSummary, children_of, ledger_page, line_summaries, running_lines

HERE = Path(__file__).parent / "templates"
TIERS = [t.value for t in sorted(Tier, key=lambda t: t.rank)]


@cache
def environment() -> Environment:
    """Dashboard templates first, then the report's (the shared evidence macros and style sheet)."""
    env = Environment(loader=ChoiceLoader([FileSystemLoader(str(HERE)), FileSystemLoader(str(TEMPLATES))]),
                      autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(FILTERS)
    env.filters["brief"] = brief
    env.globals["gate_view"] = gate_view
    return env


def brief(value: Any, limit: int = 90) -> str:
    """A ledger payload value in words: hashes cut to 12 characters, mappings as ``key value`` pairs."""
    if isinstance(value, dict):
        text = ", ".join(f"{k} {brief(v, limit)}" for k, v in value.items())
    elif isinstance(value, list):
        text = ", ".join(brief(v, limit) for v in value) or "none"
    elif value is None:
        text = "—"
    elif isinstance(value, float):
        text = f"{value:.4g}"
    else:
        text = str(value)
        if len(text) == 64 and all(c in "0123456789abcdef" for c in text):
            text = text[:12]
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render(template: str, **context: Any) -> str:
    context.setdefault("may", {})
    context.setdefault("msg", "")
    context.setdefault("ecosystem", "")
    context.setdefault("csrf", "")
    return environment().get_template(template).render(**context)


# ---------------------------------------------------------------------------------------- the lineage graph


class Node(BaseModel):
    line: str
    tier: str
    parent: str | None
    x: float
    y: float
    channels: dict[str, str]
    latest: str | None
    latest_verdict: str | None
    pinned: str = ""
    running: bool = False
    app_channel: str | None = None


class Edge(BaseModel):
    x1: float
    y1: float
    x2: float
    y2: float
    pinned: bool
    title: str


class Graph(BaseModel):
    nodes: list[Node]
    edges: list[Edge]
    width: float
    height: float
    page: int
    pages: int
    total: int
    tier: str | None
    running: dict[str, str]
    off_page_parents: list[str]


NODE_W, NODE_H, COL_W, ROW_H = 210.0, 46.0, 260.0, 58.0


def lineage_graph(ws: Workspace, page: int, per_page: int, tier: str | None = None) -> Graph:
    """One page of lines in tier order, laid out in one column per tier, with their parents' edges."""
    order = list(tier_order(ws))
    if tier in TIERS:
        order = [n for n in order if ws.eco.lines[n].tier.value == tier]
    pages = max(1, math.ceil(len(order) / per_page))
    page = min(page, pages)
    names = order[(page - 1) * per_page: page * per_page]
    apps = [n for n in names if ws.eco.lines[n].tier is Tier.app]
    models = [n for n in names if n not in apps]
    parents_of_apps = {ws.eco.lines[a].parent for a in apps} - set(models)
    summaries = line_summaries(ws.store, models + [p for p in parents_of_apps if p])
    running = running_lines(ws.store)
    rows: dict[str, int] = {}
    nodes: dict[str, Node] = {}
    parent_prod = line_summaries(ws.store, {s.parent for s in summaries.values() if s.parent} - set(summaries))
    parent_prod.update(summaries)
    for name in names:
        spec = ws.eco.lines[name]
        col = TIERS.index(spec.tier.value)
        row = rows.get(spec.tier.value, 0)
        rows[spec.tier.value] = row + 1
        s = summaries.get(name) or LineSummary(name=name, tier=spec.tier.value, parent=spec.parent, channels={})
        node = Node(line=name, tier=spec.tier.value, parent=spec.parent, x=20 + col * COL_W, y=20 + row * ROW_H,
                    channels=s.channels, latest=s.latest, latest_verdict=s.latest_verdict, running=name in running)
        if spec.tier is Tier.app and spec.app is not None and spec.parent:
            node.app_channel = spec.app.channel
            target = summaries.get(spec.parent)
            node.channels = {"serves": target.channels.get(spec.app.channel, "—")} if target else {}
        elif spec.parent and s.built_on:
            shipped = parent_prod.get(spec.parent)
            now = shipped.channels.get("production") if shipped else None
            if now and s.built_on != now:
                node.pinned = f"pinned to {s.built_on} (parent ships {now})"
        nodes[name] = node
    edges = []
    for n in nodes.values():
        p = nodes.get(n.parent or "")
        if p is not None:
            edges.append(Edge(x1=p.x + NODE_W, y1=p.y + NODE_H / 2, x2=n.x, y2=n.y + NODE_H / 2, pinned=bool(n.pinned),
                              title=n.pinned or f"{n.line} follows {p.line}"))
    height = 60 + max(rows.values(), default=1) * ROW_H
    off_page = sorted({n.parent for n in nodes.values() if n.parent and n.parent not in nodes})
    return Graph(nodes=list(nodes.values()), edges=edges, width=40 + len(TIERS) * COL_W, height=height, page=page,
                 pages=pages, total=len(order), tier=tier if tier in TIERS else None, running=running,
                 off_page_parents=off_page[:20])


# ---------------------------------------------------------------------------------------- a version


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
    released = chans.get("production") == version_id
    verdict = decision.verdict.value if decision else None
    return VersionPage(
        version=v, tier=spec.tier.value, channels=[c for c, x in chans.items() if x == version_id], line_channels=chans,
        evaluations=_eval_rows(ws.store.evaluations(version_id)), decision=decision, gates=gates,
        decisions=len(decisions), approvals=ws.store.approvals(version_id), children=children_of(ws.store, version_id),
        released=released, can_approve=not released and verdict in ("inconclusive", "fail"),
        can_promote=verdict == "pass" and not released, can_release=not released,
        can_rollback=released and ws.store.rollback_target(v.line) is not None)


# ---------------------------------------------------------------------------------------- a line's history

MAX_VERSIONS = 40


class LinePage(BaseModel):
    line: str
    tier: str
    parent: str | None
    description: str
    versions: list[str]
    total_versions: int
    suites: list[str]
    matrix: list[list[float | None]]  # R[version][suite]: the forgetting matrix
    cost: list[dict[str, float]]
    channels: dict[str, str | None]
    rollback_target: str | None
    history: list[ChannelMove]
    children: list[str]


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
    return LinePage(line=line, tier=spec.tier.value, parent=spec.parent, description=spec.description,
                    versions=[v.id for v in shown], total_versions=len(all_versions), suites=suites, matrix=matrix,
                    cost=cost, channels=ws.store.channels(line), rollback_target=ws.store.rollback_target(line),
                    history=ws.store.channel_history(line)[-MAX_VERSIONS:], children=ws.eco.children(line)[:50])


# ---------------------------------------------------------------------------------------- the ledger

_verified: dict[str, tuple[tuple[int, str], AuditReport, datetime]] = {}
_verify_lock = threading.Lock()
_walking: dict[str, threading.Thread] = {}
# a page waits this long for a chain walk it started; a longer walk finishes in the background
WAIT_FOR_WALK_S = 0.1


class LedgerView(BaseModel):
    page: LedgerPage
    pages: int
    number: int
    verification: AuditReport | None
    verified_at: datetime | None
    verified_head: int | None
    stale: bool
    walking: bool


def _head(ws: Workspace) -> tuple[int, str]:
    top = ledger_page(ws.store, 0, 1)
    return top.total, top.entries[0].hash if top.entries else ""


def verify_now(ws: Workspace) -> AuditReport:
    """Walk the whole chain now and remember the result for the ledger page."""
    with _verify_lock:
        key = _head(ws)
        report = verify(ws)
        _verified[str(ws.root.resolve())] = (key, report, datetime.now(UTC))
        return report


def _walk_in_background(ws: Workspace) -> threading.Thread:
    where = str(ws.root.resolve())
    running = _walking.get(where)
    if running is None or not running.is_alive():
        running = threading.Thread(target=verify_now, args=(ws,), daemon=True, name="ledger-verify")
        _walking[where] = running
        running.start()
    return running


def ledger_page_view(ws: Workspace, number: int, per_page: int) -> LedgerView:
    """A page of the ledger (newest first) with the last full verification of the chain. When entries were
    appended since, the chain is walked again in the background (the page waits briefly for it, so a small
    ledger shows a fresh result at once, and a large one never holds the page up)."""
    total = ledger_page(ws.store, 0, 1)
    pages = max(1, math.ceil(total.total / per_page))
    number = min(number, pages)
    page = ledger_page(ws.store, (number - 1) * per_page, per_page)
    key = (total.total, total.entries[0].hash if total.entries else "")
    where = str(ws.root.resolve())
    known = _verified.get(where)
    walking = False
    if known is None or known[0] != key:
        walker = _walk_in_background(ws)
        walker.join(WAIT_FOR_WALK_S)
        walking = walker.is_alive()
        known = _verified.get(where)
    return LedgerView(page=page, pages=pages, number=number, verification=known[1] if known else None,
                      verified_at=known[2] if known else None, verified_head=known[0][0] if known else None,
                      stale=known is None or known[0] != key, walking=walking)
