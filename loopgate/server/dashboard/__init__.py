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

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.routing import APIRoute

from loopgate.errors import LoopgateError
from loopgate.loop.workspace import Workspace
from loopgate.server.auth import PUBLIC, role_of, status_for
from loopgate.server.dashboard import actions, csrf, login, pages, views
from loopgate.server.dashboard.context import Dashboard


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


def router(ws: Workspace) -> APIRouter:
    """The dashboard's router: the login, the pages, and the actions their forms post to."""
    r = APIRouter(route_class=DashboardRoute, include_in_schema=False)
    dash = Dashboard(ws)
    for resource in (login, pages, actions):
        resource.add_routes(r, dash)
    return r

