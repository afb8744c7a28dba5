"""The one place a channel pointer changes (:func:`move_in`) and the release rule it checks
(:func:`move_refusal`), both inside the caller's write transaction, under the writers' lock — so no front end,
no verb and no repository (``channels.py``, ``gateway.py``'s canary analysis) can go around them."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from loopgate.errors import ConflictError, MoveRefused, NotFoundError
from loopgate.records import utcnow
from loopgate.store import ledger as ledger_mod
from loopgate.store.artifacts import ArtifactStore
from loopgate.store.session import aware
from loopgate.store.tables import ChannelMoveRow, ChannelRow, DecisionRow, LedgerRow, VersionFileRow, VersionRow

CHANNELS = ("staging", "canary", "production")
UNSEEN = object()  # no version was seen on the channel: the move is not a compare-and-set


class ChannelMove(BaseModel):
    id: int
    line: str
    channel: str
    from_version: str | None
    to_version: str
    kind: str
    reason: str
    actor: str
    decision_id: int | None
    created_at: datetime


def move_in(s: Session, artifacts: ArtifactStore, line: str, name: str, version_id: str, *, kind: str,
            reason: str, actor: str, decision_id: int | None, expected: object = UNSEEN,
            extra: dict[str, Any] | None = None, forced: bool = False) -> ChannelMove:
    """One channel move inside the caller's transaction, with its history row and ledger entry: the one
    place a channel pointer changes (releases, rollbacks, and the canary analysis's moves). ``expected``
    is the version the caller saw there (``UNSEEN``: no compare-and-set); ``extra`` joins the ledger
    payload. The release rule (:func:`move_refusal`) is checked here, under the writers' lock."""
    refusal = move_refusal(s, artifacts, line, name, version_id, kind=kind, decision_id=decision_id, forced=forced)
    if refusal is not None:
        err = MoveRefused(refusal)
        err.move = (line, name, version_id)  # type: ignore[attr-defined]
        raise err
    row = s.execute(select(ChannelRow).where(ChannelRow.line == line, ChannelRow.name == name)
                    .with_for_update()).scalar_one_or_none()
    prev = row.version_id if row else None
    if expected is not UNSEEN and expected != prev:
        raise ConflictError(_conflict(s, line, name, expected, prev, version_id))  # type: ignore[arg-type]
    if row is None:
        s.add(ChannelRow(line=line, name=name, version_id=version_id, updated_at=utcnow()))
    else:
        row.version_id, row.updated_at = version_id, utcnow()
    move = ChannelMoveRow(line=line, channel=name, from_version=prev, to_version=version_id, kind=kind,
                          reason=reason, actor=actor, decision_id=decision_id, created_at=utcnow())
    s.add(move)
    s.flush()
    ledger_mod.append(s, actor=actor, kind=f"channel.{kind}", subject=f"{line}/{name}", payload={
        "move_id": move.id, "from": prev, "to": version_id, "reason": reason, "decision_id": decision_id,
        **({"forced": True} if forced else {}), **(extra or {})}, key=s.info.get("ledger_key"))
    return ChannelMove(id=move.id, line=line, channel=name, from_version=prev, to_version=version_id, kind=kind,
                       reason=reason, actor=actor, decision_id=decision_id, created_at=move.created_at)


def _conflict(s: Session, line: str, name: str, saw: str | None, now: str | None, wanted: str) -> str:
    last = s.execute(select(ChannelMoveRow).where(ChannelMoveRow.line == line, ChannelMoveRow.channel == name)
                     .order_by(ChannelMoveRow.id.desc()).limit(1)).scalar_one_or_none()
    by = f" ({last.kind} by {last.actor} at {last.created_at:%Y-%m-%d %H:%M:%S})" if last else ""
    return (f"{line}/{name} changed while this command ran: it pointed at {saw or 'nothing'} when the "
            f"command read it and points at {now or 'nothing'} now{by}. Nothing was moved (not even to "
            f"{wanted}): look at 'loopgate channels {line}' and run the command again if it still applies.")


def move_refusal(s: Session, artifacts: ArtifactStore, line: str, channel: str, version_id: str, *, kind: str,
                 decision_id: int | None, forced: bool) -> str | None:
    """The release rule, checked at the one place a channel pointer changes, so no front end and no verb
    can go around it: the version is this line's; its files (and its adapter base's) are still stored;
    a release or promotion names a passing decision of this version made after the version was last
    rolled back; a rollback goes only to a version that production held through a release or promotion
    (an admin may force past that last check, with a reason)."""
    if channel not in CHANNELS:
        return f"unknown channel '{channel}'; channels are {', '.join(CHANNELS)}"
    v = s.get(VersionRow, version_id)
    if v is None:
        raise NotFoundError(f"no version {version_id}")
    if v.line != line:
        return f"{version_id} is a version of '{v.line}', not of '{line}'"
    missing = _missing_files(s, artifacts, v)
    if missing is not None:
        return missing
    if kind in ("release", "promote"):
        return _decision_refusal(s, line, channel, version_id, kind=kind, decision_id=decision_id)
    if kind == "rollback" and not forced and not held_production(s, line, version_id):
        return (f"{version_id} was never released to {line}'s production, so it is not a rollback target "
                f"(roll back only to a version production held: see 'loopgate channels {line} --history'); "
                "an admin may force it with --force and a reason")
    return None


def _missing_files(s: Session, artifacts: ArtifactStore, v: VersionRow) -> str | None:
    """Why the version cannot be served because its files (or its adapter bases') are gone, or None."""
    seen: set[str] = set()
    cur: VersionRow | None = v
    while cur is not None and cur.id not in seen:
        seen.add(cur.id)
        shas = s.execute(select(VersionFileRow.sha256).where(VersionFileRow.version_id == cur.id)).scalars()
        if any(not artifacts.has(sha) for sha in shas):
            which = "its" if cur.id == v.id else f"its base {cur.id}'s"
            return (f"{v.id} cannot be served: {which} files were garbage-collected (or are missing); "
                    "re-register it as a new version to gate it again")
        cur = s.get(VersionRow, cur.base_version) if cur.base_version else None
    return None


def _decision_refusal(s: Session, line: str, channel: str, version_id: str, *, kind: str,
                      decision_id: int | None) -> str | None:
    """Why a release or promotion may not use this decision, or None."""
    if decision_id is None:
        return (f"a {kind} of {version_id} needs a passing decision; gate it with "
                f"'loopgate release {version_id}'")
    d = s.get(DecisionRow, decision_id)
    if d is None or d.version_id != version_id:
        return f"decision {decision_id} is not a decision of {version_id}"
    if d.verdict != "pass":
        return (f"{version_id}'s decision {decision_id} is '{d.verdict}', not a pass: it may not move "
                f"{line}/{channel}")
    if recorded_verdict(s, version_id, decision_id) != "pass":
        return (f"decision {decision_id} of {version_id} says pass but its ledger entry does not: the "
                "decisions table was edited beside the ledger (run 'loopgate audit verify')")
    stale = stale_since(s, version_id)
    if stale is not None and aware(d.created_at) <= stale:
        return (f"{version_id}'s decision {decision_id} was made before {version_id} was rolled back "
                f"({stale:%Y-%m-%d %H:%M:%S}); release it again for a new decision (and new approvals)")
    return None


def recorded_verdict(s: Session, version_id: str, decision_id: int) -> str | None:
    """The verdict the ledger recorded for a decision (what a forged row cannot change)."""
    for payload in s.execute(select(LedgerRow.payload).where(
            LedgerRow.kind == "decision", LedgerRow.subject == version_id)).scalars():
        entry = json.loads(payload)
        if entry.get("decision_id") == decision_id:
            return str(entry.get("verdict"))
    return None


def held_production(s: Session, line: str, version_id: str) -> bool:
    """Whether production held the version through a gated move (a release or a promotion)."""
    hit = s.execute(select(ChannelMoveRow.id).where(
        ChannelMoveRow.line == line, ChannelMoveRow.channel == "production",
        ChannelMoveRow.to_version == version_id, ChannelMoveRow.kind.in_(("release", "promote"))).limit(1))
    return hit.scalar_one_or_none() is not None


def stale_since(s: Session, version_id: str) -> datetime | None:
    """When the version was last rolled back off a channel: its decisions and approvals from before that
    are spent (a rolled-back version ships again only through a new decision)."""
    row = s.execute(select(ChannelMoveRow.created_at).where(
        ChannelMoveRow.from_version == version_id, ChannelMoveRow.kind == "rollback")
        .order_by(ChannelMoveRow.id.desc()).limit(1)).scalar_one_or_none()
    return aware(row) if row is not None else None
