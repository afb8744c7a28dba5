"""The REST API under ``/api/v1``: the service layer's verbs (:mod:`loopgate.loop`) over HTTP, returning the
same pydantic outcomes the CLI prints with ``--json``.

Every route declares its role (:mod:`.auth`), which the OpenAPI document lists as bearer auth; every error
answers JSON ``{"error", "message"}`` (:mod:`.errors`) with the CLI's message (401 no or a bad token, 403 a role
that is not enough or the two-person rule, 404 not found, 409 conflict, 400 a refused request or any other
user error). A release the gates block
is not an error: ``POST …/release`` answers 200 with ``released: false`` and the decision (the CLI exits 3).
Mutating verbs run one at a time and act as the token's name (recorded in the ledger).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from loopgate.loop.workspace import Workspace
from loopgate.server.api.auth import LoopgateRoute
from loopgate.server.api.errors import ErrorBody
from loopgate.server.api.routes import PREFIX, Api, admin, channels, ledger, lines, updates, versions

# one entry for every 4xx (the kinds are in ErrorBody's description); it also keeps FastAPI from listing its 422
ERRORS: dict[int | str, dict[str, Any]] = {"4XX": {"model": ErrorBody, "description": "a refused request: "
                                                   "400 invalid, 401 no or a bad token, 403 not allowed, 404 not "
                                                   "found, 409 a conflict with recorded state"}}
# the resources in the order their routes are listed (the OpenAPI document's order)
RESOURCES = (lines, versions, ledger, updates, channels, admin)


def router(ws: Workspace) -> APIRouter:
    """The API's router: every resource module's routes, under :data:`PREFIX`."""
    r = APIRouter(prefix=PREFIX, route_class=LoopgateRoute, tags=["api"], responses=ERRORS)
    api = Api.open(ws)
    for resource in RESOURCES:
        resource.add_routes(r, api)
    return r


__all__ = ["ERRORS", "PREFIX", "router"]
