"""The dashboard: server-rendered pages (Jinja2, plain HTML forms, no JavaScript) over the service layer.

Pages: the ecosystem's lineage graph (``/``), a version (``/versions/{id}``), a line's history
(``/lines/{line}``) and the ledger with its verification state (``/ledger``, filtered by ``?kind=`` and
``?actor=``); every version, line and lineage node says its state from production's point of view
(:mod:`loopgate.report.state`); a login page stores a token in
a cookie. Buttons (approve, release, promote, rollback) are shown only to roles that may use them, and the
routes they post to declare those roles, as the REST API's do. Forms carry a CSRF token, and a POST is
checked for it and for a foreign ``Origin`` before it runs (:mod:`loopgate.server.dashboard.csrf`). Every page
reads a bounded amount of the registry (server-side paging, :mod:`loopgate.store.pages`), so it answers as fast
on 10,000 lines as on ten.
Gate evidence is drawn by the static reports' renderer (:mod:`loopgate.report.evidence`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute

from loopgate import loop
from loopgate.errors import LoopgateError
from loopgate.loop.workspace import Workspace
from loopgate.server.auth import COOKIE, PUBLIC, RoleRequirement, may, role_of, status_for
from loopgate.server.dashboard import csrf, views
from loopgate.store.tokens import TokenInfo, authenticate

PAGE_LINES = 60  # lines per page of the lineage graph
PAGE_LEDGER = 50


class DashboardRoute(APIRoute):
    """A page route: no or a bad token shows the login page (401), too low a role or a user error an error
    page with the CLI's message. A POST that may be forged from another page (:func:`csrf.refusal`) is refused
    with 403 before the route runs, whatever the route: a new form is covered without remembering to."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        public = role_of(self) == PUBLIC

        async def run(request: Request) -> Response:
            try:
                forged = await csrf.refusal(request, public=public)
                if forged is not None:
                    raise HTTPException(403, detail=forged)
                return await handler(request)
            except HTTPException as e:
                if e.status_code == 401:
                    return HTMLResponse(views.render("login.html.j2", token=None, error=str(e.detail),
                                                     next=request.url.path), status_code=401)
                return HTMLResponse(views.render("error.html.j2", token=None, status=e.status_code,
                                                 message=str(e.detail)), status_code=e.status_code)
            except LoopgateError as e:
                return HTMLResponse(views.render("error.html.j2", token=None, status=status_for(e), message=str(e)),
                                    status_code=status_for(e))

        return run


def _back(path: str, message: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?msg={quote(message)}", status_code=303)


def router(ws: Workspace) -> APIRouter:
    r = APIRouter(route_class=DashboardRoute, include_in_schema=False)
    writing = threading.Lock()

    def requires(role: str) -> Any:
        return Depends(RoleRequirement(role, ws, cookie=True))

    public, viewer, releaser, approver = (requires(x) for x in ("public", "viewer", "releaser", "approver"))

    def page(template: str, token: TokenInfo | None, request: Request, **context: Any) -> HTMLResponse:
        roles = {role: may(token, role) for role in ("releaser", "approver", "admin")}
        return HTMLResponse(views.render(template, token=token, may=roles, msg=request.query_params.get("msg", ""),
                                         ecosystem=ws.eco.name, csrf=csrf.form_token(csrf.session_of(request)),
                                         **context))

    # ------------------------------------------------------------------ login

    @r.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, token: TokenInfo | None = public) -> HTMLResponse:
        return page("login.html.j2", token, request, error="", next=request.query_params.get("next", "/"))

    @r.post("/login")
    def login(request: Request, token: str = Form(""), next: str = Form("/"),
              _: TokenInfo | None = public) -> Response:
        """Check the token and keep it in an HTTP-only, same-site cookie."""
        who = authenticate(ws.store, token.strip())
        if who is None:
            return HTMLResponse(views.render("login.html.j2", token=None, error="unknown or revoked token",
                                             next=next), status_code=401)
        target = next if next.startswith("/") and not next.startswith("//") else "/"
        resp = RedirectResponse(target, status_code=303)
        resp.set_cookie(COOKIE, token.strip(), httponly=True, samesite="strict", path="/")
        return resp

    @r.post("/logout")
    def logout(_: TokenInfo | None = public) -> Response:
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(COOKIE, path="/")
        return resp

    # ------------------------------------------------------------------ pages

    @r.get("/", response_class=HTMLResponse)
    def lineage(request: Request, token: TokenInfo = viewer, page_no: int = Query(1, ge=1, alias="page"),
                tier: str | None = None) -> HTMLResponse:
        """The ecosystem as a lineage graph, one page of lines at a time (tier order)."""
        graph = views.lineage_graph(ws, page_no, PAGE_LINES, tier)
        return page("lineage.html.j2", token, request, graph=graph)

    @r.get("/versions/{version_id}", response_class=HTMLResponse)
    def version(version_id: str, request: Request, token: TokenInfo = viewer) -> HTMLResponse:
        return page("version.html.j2", token, request, v=views.version_page(ws, version_id))

    @r.get("/lines/{line}", response_class=HTMLResponse)
    def line(line: str, request: Request, token: TokenInfo = viewer) -> HTMLResponse:
        return page("line.html.j2", token, request, h=views.line_page(ws, line))

    @r.get("/ledger", response_class=HTMLResponse)
    def ledger(request: Request, token: TokenInfo = viewer, page_no: int = Query(1, ge=1, alias="page"),
               kind: str = "", actor: str = "") -> HTMLResponse:
        """The ledger, newest first, filtered by kind and actor; an unknown one answers 400 with the page's form
        and what it knows instead of a list."""
        view = views.ledger_page_view(ws, page_no, PAGE_LEDGER, kind.strip(), actor.strip())
        resp = page("ledger.html.j2", token, request, l=view)
        resp.status_code = 400 if view.problem else 200
        return resp

    # ------------------------------------------------------------------ actions (forms post here)

    @r.post("/ledger/verify")
    def ledger_verify(_: TokenInfo = viewer) -> Response:
        report = views.verify_now(ws)
        return _back("/ledger", "ledger verified: intact" if report.ok else f"ledger broken: {report.ledger.problem}")

    @r.post("/versions/{version_id}/approve")
    def approve(version_id: str, reason: str = Form(...), token: TokenInfo = approver) -> Response:
        with writing:
            out = loop.approve(ws, version_id, token.name, reason, [], token_created_by=token.created_by)
        return _back(f"/versions/{version_id}", f"approved by {token.name}: " +
                     ("released" if out.released else f"decision {out.decision.verdict.value}, not released"))

    @r.post("/versions/{version_id}/release")
    def release(version_id: str, token: TokenInfo = releaser) -> Response:
        with writing:
            out = loop.release(ws, version_id, actor=token.name)
        return _back(f"/versions/{version_id}", "released" if out.released
                     else f"not released: decision {out.decision.verdict.value}")

    @r.post("/versions/{version_id}/promote")
    def promote(version_id: str, channel: str = Form("production"), token: TokenInfo = releaser) -> Response:
        with writing:
            loop.promote(ws, version_id, channel, actor=token.name)
        return _back(f"/versions/{version_id}", f"promoted to {channel}")

    @r.post("/lines/{line}/rollback")
    def rollback(line: str, reason: str = Form(""), to: str = Form(""), token: TokenInfo = releaser) -> Response:
        with writing:
            out = loop.rollback(ws, line, to=to or None, reason=reason, actor=token.name)
        return _back(f"/lines/{line}", f"rolled back {line}: {out.from_version} → {out.to_version}")

    return r
