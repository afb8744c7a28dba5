"""What every verb of the loop returns: typed records that serialise the same way to the CLI's ``--json``,
a REST response and a report (inspect_ai-style: one canonical shape per outcome)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from loopgate.records import Decision, TransferAttempt
from loopgate.store import ArtifactReport, ChannelMove, VersionInfo
from loopgate.store.ledger import VerifyReport


class PropagationOutcome(BaseModel):
    """What happened to one downstream line in a propagation wave."""

    line: str
    from_parent: str | None = None
    to_parent: str
    strategy: str | None = None
    attempts: list[TransferAttempt] = []
    version: str | None = None
    verdict: str | None = None
    released: bool = False
    pinned: bool = False
    note: str = ""


class ReleaseOutcome(BaseModel):
    """A candidate's decision and what it moved (and, for an update, how it was trained)."""

    version: str
    decision: Decision
    released: bool
    # for an update: final loss, tokens/s, tokens seen, training FLOPs and wall time of the training run
    training: dict[str, Any] = {}
    channel_moves: list[ChannelMove] = []
    propagation: list[PropagationOutcome] = []
    note: str = ""
    # where a release put the version: "production", or "canary" alone (production follows the canary analysis
    # or `loopgate promote`, and only then does the downstream wave run); None when nothing was released
    released_to: str | None = None


class FailedRun(BaseModel):
    """A run that stopped on an error: resume reports it and does not re-run it."""

    line: str
    data: list[str]
    error: str
    run: str = ""  # its id, for `loopgate runs abandon`
    resumed: bool = False  # True: this resume re-ran it and it failed; False: it had failed before


class ResumeOutcome(BaseModel):
    finished: list[ReleaseOutcome] = []
    failed: list[FailedRun] = []


class PlanStep(BaseModel):
    """One line of a downstream wave: what propagation would do to it, and the strategies it would try."""

    line: str
    tier: str
    parent: str | None
    current: str | None = None
    built_on: str | None = None
    action: str
    strategies: list[str] = []


class PromoteOutcome(BaseModel):
    moves: list[ChannelMove]
    propagation: list[PropagationOutcome] = []


class CascadeMove(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    line: str
    from_version: str = Field(alias="from")
    to_version: str = Field(alias="to")


class RollbackOutcome(BaseModel):
    """A rollback: the line's move, the children it cascaded to, the apps that follow, every channel move."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    line: str
    from_version: str = Field(alias="from")
    to_version: str = Field(alias="to")
    reason: str
    cascade: list[CascadeMove] = []
    apps_following: list[str] = []
    moves: list[ChannelMove] = []


class StatusRow(BaseModel):
    """One line of ``loopgate status``."""

    line: str
    tier: str
    parent: str | None
    channels: dict[str, str | None]
    latest: str | None
    note: str = ""
    pinned: bool = False


class LineageLink(BaseModel):
    version: str
    relation: str
    of: str | None = None


class Lineage(BaseModel):
    """A version's ancestors (parent versions and adapter bases, nearest first) and descendants."""

    version: str
    ancestors: list[LineageLink]
    descendants: list[LineageLink]


class VersionView(VersionInfo):
    """A version and the channels that point at it now."""

    channels: list[str] = []


class ChannelReport(BaseModel):
    """Where a line's channels point, its rollback target, and every move so far."""

    line: str
    channels: dict[str, str | None]
    rollback_target: str | None
    history: list[ChannelMove]


class AuditReport(BaseModel):
    """The ledger's hash chain checked and, on request, every stored file re-hashed."""

    ok: bool
    ledger: VerifyReport
    artifacts: ArtifactReport | None = None
    # table rows (channels, moves, decisions, approvals, tokens) that disagree with the ledger's replay
    state_problems: list[str] = []


class GcOutcome(BaseModel):
    deleted_blobs: int
    freed_bytes: int
    versions: list[str]
    kept_versions: list[str]
    dry_run: bool
