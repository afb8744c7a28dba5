"""What every dashboard route module needs: the workspace, the role each route declares, the write lock, and
:meth:`Dashboard.page`, which renders a template with what every page shows."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from loopgate.loop.rules import may
from loopgate.loop.workspace import Workspace
from loopgate.server.auth import RoleRequirement
from loopgate.server.dashboard import csrf, views
from loopgate.store.tokens import TokenInfo


def _requires(ws: Workspace, role: str) -> Any:
    return Depends(RoleRequirement(role, ws, cookie=True))


@dataclass
class Dashboard:
    """A route's role is the default of its token parameter (``token: TokenInfo = dash.viewer``)."""

    ws: Workspace
    writing: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.public, self.viewer, self.releaser, self.approver = (
            _requires(self.ws, role) for role in ("public", "viewer", "releaser", "approver"))

    def page(self, template: str, token: TokenInfo | None, request: Request, **context: Any) -> HTMLResponse:
        """A page: the buttons the token's role may use, the message a form left, the CSRF form token."""
        roles = {role: may(token, role) for role in ("releaser", "approver", "admin")}
        return HTMLResponse(views.render(template, token=token, may=roles, msg=request.query_params.get("msg", ""),
                                         ecosystem=self.ws.eco.name, csrf=csrf.form_token(csrf.session_of(request)),
                                         **context))


def back(path: str, message: str) -> RedirectResponse:
    """After a form's action: back to the page, with a message to show."""
    return RedirectResponse(f"{path}?msg={quote(message)}", status_code=303)
