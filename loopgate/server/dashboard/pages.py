"""The pages: the lineage graph (``/``), a version, a line's history, the ledger."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from loopgate.server.dashboard import views
from loopgate.server.dashboard.context import Dashboard
from loopgate.store.tokens import TokenInfo

PAGE_LINES = 60  # lines per page of the lineage graph
PAGE_LEDGER = 50


def add_routes(r: APIRouter, dash: Dashboard) -> None:
    ws, viewer = dash.ws, dash.viewer

    @r.get("/", response_class=HTMLResponse)
    def lineage(request: Request, token: TokenInfo = viewer, page_no: int = Query(1, ge=1, alias="page"),
                tier: str | None = None) -> HTMLResponse:
        """The ecosystem as a lineage graph, one page of lines at a time (tier order)."""
        graph = views.lineage_graph(ws, page_no, PAGE_LINES, tier)
        return dash.page("lineage.html.j2", token, request, graph=graph)

    @r.get("/versions/{version_id}", response_class=HTMLResponse)
    def version(version_id: str, request: Request, token: TokenInfo = viewer) -> HTMLResponse:
        return dash.page("version.html.j2", token, request, v=views.version_page(ws, version_id))

    @r.get("/lines/{line}", response_class=HTMLResponse)
    def line(line: str, request: Request, token: TokenInfo = viewer) -> HTMLResponse:
        return dash.page("line.html.j2", token, request, h=views.line_page(ws, line))

    @r.get("/ledger", response_class=HTMLResponse)
    def ledger(request: Request, token: TokenInfo = viewer, page_no: int = Query(1, ge=1, alias="page"),
               kind: str = "", actor: str = "") -> HTMLResponse:
        """The ledger, newest first, filtered by kind and actor; an unknown one answers 400 with the page's form
        and what it knows instead of a list."""
        view = views.ledger_page_view(ws, page_no, PAGE_LEDGER, kind.strip(), actor.strip())
        resp = dash.page("ledger.html.j2", token, request, l=view)
        resp.status_code = 400 if view.problem else 200
        return resp
