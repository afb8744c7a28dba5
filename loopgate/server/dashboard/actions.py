"""What the pages' forms post to: verify the ledger, approve, release, promote, roll back (one at a time);
each redirects back to its page with a message."""

from __future__ import annotations

from fastapi import APIRouter, Form
from fastapi.responses import Response

from loopgate import loop
from loopgate.loop.channels import approve_as
from loopgate.server.dashboard import views
from loopgate.server.dashboard.context import Dashboard, back
from loopgate.store.tokens import TokenInfo


def add_routes(r: APIRouter, dash: Dashboard) -> None:
    ws, writing, releaser = dash.ws, dash.writing, dash.releaser

    @r.post("/ledger/verify")
    def ledger_verify(_: TokenInfo = dash.viewer) -> Response:
        report = views.verify_now(ws)
        return back("/ledger", "ledger verified: intact" if report.ok else f"ledger broken: {report.ledger.problem}")

    @r.post("/versions/{version_id}/approve")
    def approve(version_id: str, reason: str = Form(...), token: TokenInfo = dash.approver) -> Response:
        with writing:
            out = approve_as(ws, version_id, token, reason, [])
        return back(f"/versions/{version_id}", f"approved by {token.name}: " +
                    ("released" if out.released else f"decision {out.decision.verdict.value}, not released"))

    @r.post("/versions/{version_id}/release")
    def release(version_id: str, token: TokenInfo = releaser) -> Response:
        with writing:
            out = loop.release(ws, version_id, actor=token.name)
        return back(f"/versions/{version_id}", "released" if out.released
                    else f"not released: decision {out.decision.verdict.value}")

    @r.post("/versions/{version_id}/promote")
    def promote(version_id: str, channel: str = Form("production"), token: TokenInfo = releaser) -> Response:
        with writing:
            loop.promote(ws, version_id, channel, actor=token.name)
        return back(f"/versions/{version_id}", f"promoted to {channel}")

    @r.post("/lines/{line}/rollback")
    def rollback(line: str, reason: str = Form(""), to: str = Form(""), token: TokenInfo = releaser) -> Response:
        with writing:
            out = loop.rollback(ws, line, to=to or None, reason=reason, actor=token.name)
        return back(f"/lines/{line}", f"rolled back {line}: {out.from_version} → {out.to_version}")
