"""The verbs that move channels: ``release``, ``approve``, ``promote``, ``rollback`` (one at a time)."""

from __future__ import annotations

from fastapi import APIRouter

from loopgate import loop
from loopgate.loop.channels import approve_as
from loopgate.loop.outcomes import PromoteOutcome, ReleaseOutcome, RollbackOutcome
from loopgate.server.api.bodies import ApproveBody, PromoteBody, RollbackBody
from loopgate.server.api.routes import Api
from loopgate.store.tokens import TokenInfo


def add_routes(r: APIRouter, api: Api) -> None:
    ws, writing, releaser = api.ws, api.writing, api.releaser

    @r.post("/versions/{version_id}/release", response_model=ReleaseOutcome)
    def release(version_id: str, token: TokenInfo = releaser) -> ReleaseOutcome:
        """Gate the version and release it if the gates allow (200 either way: read ``released``)."""
        with writing:
            return loop.release(ws, version_id, actor=token.name)

    @r.post("/versions/{version_id}/approve", response_model=ReleaseOutcome)
    def approve(version_id: str, body: ApproveBody, token: TokenInfo = api.approver) -> ReleaseOutcome:
        """Approve as the token's name (never the author or the requester), then decide again."""
        with writing:
            return approve_as(ws, version_id, token, body.reason, body.overrides)

    @r.post("/versions/{version_id}/promote", response_model=PromoteOutcome)
    def promote(version_id: str, body: PromoteBody, token: TokenInfo = releaser) -> PromoteOutcome:
        with writing:
            return loop.promote(ws, version_id, body.channel, actor=token.name)

    @r.post("/lines/{line}/rollback", response_model=RollbackOutcome)
    def rollback(line: str, body: RollbackBody, token: TokenInfo = releaser) -> RollbackOutcome:
        with writing:
            return loop.rollback(ws, line, to=body.to, reason=body.reason, actor=token.name, force=body.force,
                                 role=token.role)
