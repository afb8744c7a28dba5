"""What an admin does: ``/tokens`` (list, create, revoke) and ``/gc`` (collect unneeded artifacts)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from fastapi import Path as FastPath

from loopgate.loop.audit import collect_garbage
from loopgate.loop.outcomes import GcOutcome
from loopgate.server.api.bodies import GcBody, TokenBody
from loopgate.server.api.routes import Api
from loopgate.store.tokens import NewToken, TokenInfo, create_token, list_tokens, revoke_token


def add_routes(r: APIRouter, api: Api) -> None:
    ws, admin = api.ws, api.admin

    @r.get("/tokens", response_model=list[TokenInfo])
    def tokens(_: TokenInfo = admin) -> list[TokenInfo]:
        return list_tokens(ws.store, include_revoked=True)

    @r.post("/tokens", response_model=NewToken, status_code=201)
    def token_create(body: TokenBody, token: TokenInfo = admin) -> NewToken:
        """A new token (its secret is in this answer only)."""
        return create_token(ws.store, role=body.role, name=body.name, actor=token.name)

    @r.delete("/tokens/{token_id}", response_model=TokenInfo)
    def token_revoke(token_id: Annotated[int, FastPath(ge=1, le=2**31 - 1)], token: TokenInfo = admin) -> TokenInfo:
        return revoke_token(ws.store, token_id, actor=token.name)

    @r.post("/gc", response_model=GcOutcome)
    def gc(body: GcBody, token: TokenInfo = admin) -> GcOutcome:
        """Collect artifacts no channel needs (a dry run unless ``dry_run`` is false)."""
        with api.writing:
            return collect_garbage(ws, keep_latest=body.keep_latest, dry_run=body.dry_run, actor=token.name)
