"""The lineage graph: one page of lines in tier order, each box filled by production's health (what production
serves, and whether it got there by a rollback), with the newest candidate's state as a separate mark."""

from __future__ import annotations

import math

from pydantic import BaseModel

from loopgate.loop.lines import tier_order
from loopgate.loop.workspace import Workspace
from loopgate.report.state import LineState, VersionState, line_states
from loopgate.spec import Tier
from loopgate.store.pages import LineSummary, line_summaries, running_lines

TIERS = [t.value for t in sorted(Tier, key=lambda t: t.rank)]
NODE_W, NODE_H, COL_W, ROW_H = 210.0, 46.0, 260.0, 58.0


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
    health: str = "none"  # production's: healthy, rolled back, none
    health_note: str = ""
    candidate: VersionState | None = None  # the newest version when production does not serve it

    @property
    def health_class(self) -> str:
        return self.health.replace(" ", "")


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


def _node(ws: Workspace, name: str, x: float, y: float, s: LineSummary, state: LineState | None,
          states: dict[str, LineState], summaries: dict[str, LineSummary], running: bool) -> Node:
    spec = ws.eco.lines[name]
    node = Node(line=name, tier=spec.tier.value, parent=spec.parent, x=x, y=y, channels=s.channels, latest=s.latest,
                latest_verdict=s.latest_verdict, running=running)
    if spec.tier is Tier.app and spec.app is not None and spec.parent:
        # an app serves its model line's channel: it is as healthy as what that channel holds
        node.app_channel = spec.app.channel
        target = summaries.get(spec.parent)
        node.channels = {"serves": target.channels.get(spec.app.channel, "—")} if target else {}
        model = states.get(spec.parent)
        if model is not None and target and target.channels.get(spec.app.channel):
            node.health = model.health if spec.app.channel == "production" else "healthy"
            node.health_note = model.note if spec.app.channel == "production" else ""
    elif state is not None:
        node.health, node.health_note, node.pinned, node.candidate = (state.health, state.note, state.pinned,
                                                                       state.candidate)
    return node


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
    wanted = models + [p for p in parents_of_apps if p]
    summaries = line_summaries(ws.store, wanted)
    states = line_states(ws.store, wanted, summaries)
    running = running_lines(ws.store)
    rows: dict[str, int] = {}
    nodes: dict[str, Node] = {}
    for name in names:
        spec = ws.eco.lines[name]
        col = TIERS.index(spec.tier.value)
        row = rows.get(spec.tier.value, 0)
        rows[spec.tier.value] = row + 1
        s = summaries.get(name) or LineSummary(name=name, tier=spec.tier.value, parent=spec.parent, channels={})
        nodes[name] = _node(ws, name, 20 + col * COL_W, 20 + row * ROW_H, s, states.get(name), states, summaries,
                            name in running)
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
