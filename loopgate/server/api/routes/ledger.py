"""``/ledger…``: the ledger, a page at a time, and its verification."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from loopgate.loop.audit import verify
from loopgate.loop.outcomes import AuditReport
from loopgate.server.api.routes import Api
from loopgate.store.pages import LedgerPage, ledger_page
from loopgate.store.tokens import TokenInfo


def add_routes(r: APIRouter, api: Api) -> None:
    ws, viewer = api.ws, api.viewer

    @r.get("/ledger", response_model=LedgerPage)
    def ledger(_: TokenInfo = viewer, offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
               limit: Annotated[int, Query(ge=1, le=500)] = 50) -> LedgerPage:
        """A page of the ledger, newest first."""
        return ledger_page(ws.store, offset, limit)

    @r.get("/ledger/verify", response_model=AuditReport)
    def ledger_verify(_: TokenInfo = viewer) -> AuditReport:
        """The hash chain walked end to end and checked against the head anchor."""
        return verify(ws)
