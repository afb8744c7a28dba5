"""Marks on a version's report: the rollbacks that moved channels off it or back onto it, and how propagation
built it (the transfer strategy accepted and every one tried before it)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ValidationError

from loopgate.records import Provenance, TransferAttempt
from loopgate.store import ChannelMove, VersionInfo


class RollbackMark(BaseModel):
    """A rollback that moved channels of the line off this version (``rolled_back``) or back onto it
    (``restored``): when, by whom, from and to what, and why (from the channel history)."""

    direction: Literal["rolled_back", "restored"]
    channels: list[str]
    from_version: str | None = None
    to_version: str
    actor: str
    reason: str
    at: datetime


class TransferMark(BaseModel):
    """How propagation built this version: the strategy that was accepted, what it re-derived, and every
    strategy tried before it (from the version's provenance)."""

    strategy: str
    built_from: str | None = None  # the child's production version it re-derived
    old_parent: str | None = None
    new_parent: str | None = None
    attempts: list[TransferAttempt] = []


def rollback_marks(history: list[ChannelMove], version_id: str) -> list[RollbackMark]:
    """The rollbacks that moved a channel off ``version_id`` or onto it, oldest first; the channels one
    rollback moved together (production and the canary that held the same version) make one mark."""
    marks: list[RollbackMark] = []
    last_id = -2
    for m in history:
        if m.kind != "rollback" or version_id not in (m.from_version, m.to_version) or m.from_version == m.to_version:
            continue
        direction: Literal["rolled_back", "restored"] = "rolled_back" if m.from_version == version_id else "restored"
        prev = marks[-1] if marks else None
        if (prev is not None and m.id == last_id + 1 and (prev.direction, prev.from_version, prev.to_version,
                                                          prev.actor, prev.reason)
                == (direction, m.from_version, m.to_version, m.actor, m.reason)):
            prev.channels.append(m.channel)  # moved in the same transaction as the mark before
        else:
            marks.append(RollbackMark(direction=direction, channels=[m.channel], from_version=m.from_version,
                                      to_version=m.to_version, actor=m.actor, reason=m.reason, at=m.created_at))
        last_id = m.id
    return marks


def transfer_mark(version: VersionInfo) -> TransferMark | None:
    """The transfer strategy that built ``version``, when propagation built it (None otherwise)."""
    prov = Provenance.of(version.provenance)
    if version.source != "transfer" or prov.strategy is None:
        return None
    attempts = []
    for a in prov.attempts:
        try:
            attempts.append(TransferAttempt.model_validate(a))
        except ValidationError:  # a provenance written by an older Loopgate: the strategy is still known
            continue
    moved = prov.transferred_from
    return TransferMark(strategy=prov.strategy, built_from=prov.old_child,
                        old_parent=moved.old_parent if moved else None, new_parent=version.parent_version,
                        attempts=attempts)
