"""Bearer tokens and roles, shared by the REST API and the dashboard: every route declares the role it needs
with ``Depends(requires(ROLE))``.

Roles (which token roles satisfy which is a rule, :data:`loopgate.loop.rules.ALLOWED`): ``viewer`` reads;
``releaser`` releases, promotes and rolls back; ``approver`` approves (the two-person rule is checked on the
token's identity); ``admin`` manages tokens and collects garbage, and may do everything else. ``public`` marks
the few routes that need no token (the login page). The declaration is a :class:`RoleRequirement` object, so a
test can walk the app's routes and read what each one needs.

A token comes in the ``Authorization: Bearer …`` header (the REST API) or, for the dashboard, in the
``loopgate_token`` cookie set by its login page. No token, or an unknown or revoked one → 401; a token whose
role is not enough → 403.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, HTTPException, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from loopgate.errors import ConflictError, GateBlocked, ImmutableError, LoopgateError, NotFoundError
from loopgate.loop.rules import ALLOWED, TwoPersonRuleError, may
from loopgate.loop.workspace import Workspace
from loopgate.store.tokens import TokenInfo, authenticate

COOKIE = "loopgate_token"
PUBLIC = "public"


# Declares the bearer token in the OpenAPI document (``components.securitySchemes`` and each route's
# ``security``); it never refuses on its own (auto_error off): RoleRequirement answers 401/403 in the API's body.
BEARER = HTTPBearer(auto_error=False, scheme_name="bearerToken",
                    description="A Loopgate API token (`lg_…`): `loopgate token create --role ROLE --as NAME`. "
                                "Roles: viewer, releaser, approver, admin.")


class RoleRequirement:
    """The dependency a route declares: ``requires("releaser")``. Returns the caller's token (None if public)."""

    def __init__(self, role: str, ws: Workspace, *, cookie: bool) -> None:
        if role != PUBLIC and role not in ALLOWED:
            raise ValueError(f"unknown role {role!r}")
        self.role, self.ws, self.cookie = role, ws, cookie

    def __call__(self, request: Request,
                 _declared: HTTPAuthorizationCredentials | None = Depends(BEARER)) -> TokenInfo | None:
        secret = bearer(request, cookie=self.cookie)  # the header, or the dashboard's cookie
        token = authenticate(self.ws.store, secret) if secret else None
        if self.role == PUBLIC:
            return token
        if token is None:
            why = "no token" if not secret else "unknown or revoked token"
            raise HTTPException(401, detail=f"{why}: send 'Authorization: Bearer <token>' "
                                            "(create one with 'loopgate token create --role ROLE --as NAME')",
                                headers={"WWW-Authenticate": "Bearer"})
        if not may(token, self.role):
            raise HTTPException(403, detail=f"this needs the {self.role} role; your token ({token.name}) is "
                                            f"{token.role}")
        return token


def bearer(request: Request, *, cookie: bool) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(COOKIE) if cookie else None


def status_for(e: LoopgateError) -> int:
    """HTTP status of a user error: 404 for what does not exist, 403 for the two-person rule, 409 for a
    conflict with recorded state (an immutable record, another writer's channel move), 400 otherwise. A gate
    that blocks a release is not an error: the route answers 200 with the decision."""
    if isinstance(e, NotFoundError):
        return 404
    if isinstance(e, TwoPersonRuleError):
        return 403
    if isinstance(e, ImmutableError | ConflictError | GateBlocked):
        return 409
    return 400


def role_of(route: APIRoute) -> str | None:
    """The role a route declares (None when it declares none)."""
    for dep in route.dependant.dependencies:
        if isinstance(dep.call, RoleRequirement):
            return dep.call.role
    return None


def walk_routes(routes: list[Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Every leaf route of an app as (full path, route), through included routers (FastAPI ≥ 0.160 keeps an
    included router as one ``_IncludedRouter`` entry holding the original router)."""
    out: list[tuple[str, Any]] = []
    for route in routes:
        original = getattr(route, "original_router", None)
        if original is not None:
            context = getattr(route, "include_context", None)
            out += walk_routes(list(original.routes), prefix + str(getattr(context, "prefix", "") or ""))
        elif hasattr(route, "path"):
            out.append((prefix + route.path, route))
    return out


__all__ = ["ALLOWED", "BEARER", "COOKIE", "PUBLIC", "RoleRequirement", "bearer", "may", "role_of", "status_for",
           "walk_routes"]
