"""The login page (a token kept in an HTTP-only, same-site cookie) and logout."""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from loopgate.server.auth import COOKIE
from loopgate.server.dashboard import views
from loopgate.server.dashboard.context import Dashboard
from loopgate.store.tokens import TokenInfo, authenticate


def add_routes(r: APIRouter, dash: Dashboard) -> None:
    ws, public = dash.ws, dash.public

    @r.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, token: TokenInfo | None = public) -> HTMLResponse:
        return dash.page("login.html.j2", token, request, error="", next=request.query_params.get("next", "/"))

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
