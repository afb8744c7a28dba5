"""The REST API's request bodies and the answers made for it alone (every other answer is a service-layer
outcome, :mod:`loopgate.loop.outcomes`)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from loopgate.loop.outcomes import VersionView
from loopgate.records import Decision
from loopgate.store import Approval
from loopgate.store.pages import LineSummary, Page


class ApproveBody(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)
    overrides: list[str] = []


class PromoteBody(BaseModel):
    channel: str = "production"


class RollbackBody(BaseModel):
    to: str | None = None
    reason: str = Field("", max_length=2000)
    # past the release rule (a version production never held): an admin token only, with a reason
    force: bool = False


class TokenBody(BaseModel):
    role: str
    name: str = Field(min_length=1, max_length=200)


class UpdateBody(BaseModel):
    data: list[str] = Field(min_length=1, max_length=50)  # JSONL files, named relative to the workspace folder
    recipe: str | None = None
    seed: int | None = Field(None, ge=0, lt=2**32)  # checked at the request, not inside the job


class GcBody(BaseModel):
    keep_latest: int = Field(1, ge=0)
    dry_run: bool = True


class LineSummaryPage(Page):
    lines: list[LineSummary]


class VersionDetail(BaseModel):
    version: VersionView
    decisions: list[Decision]
    approvals: list[Approval]
