"""The repository of decisions and the approvals that approve one of them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from loopgate.errors import NotFoundError
from loopgate.records import Decision, utcnow
from loopgate.store import ledger as ledger_mod
from loopgate.store.tables import ApprovalRow, DecisionRow
from loopgate.store.versions import VersionRepository


class Approval(BaseModel):
    version: str
    approver: str
    reason: str
    overrides: list[str]
    created_at: datetime
    decision_id: int | None = None  # the decision it approves (None: recorded before approvals bound to one)


def add_decision_in(s: Session, decision: Decision, actor: str, key: str | None) -> Decision:
    """One decision and its ledger entry inside the caller's transaction; returns it with its id."""
    row = DecisionRow(version_id=decision.version, verdict=decision.verdict.value,
                      policy_sha256=decision.policy_sha256, record={}, created_at=utcnow())
    s.add(row)
    s.flush()
    stored = decision.model_copy(update={"id": row.id})
    row.record = stored.model_dump(mode="json")
    ledger_mod.append(s, actor=actor, kind="decision", subject=decision.version, payload={
        "decision_id": row.id, "verdict": decision.verdict.value, "policy_sha256": decision.policy_sha256,
        "gates": {g.name: g.verdict.value for g in decision.gates}, "baselines": decision.baselines},
        key=key)
    return stored


class DecisionRepository(VersionRepository):
    """Decisions (a gate run's verdicts with their evidence) and approvals; approvals check their version."""

    def add_decision(self, decision: Decision, actor: str = "loopgate") -> Decision:
        return self.add_decisions([decision], actor=actor)[0]

    def add_decisions(self, decisions: list[Decision], actor: str = "loopgate") -> list[Decision]:
        """Record decisions (one transaction, each with its ledger entry); returns them with their ids."""
        stored: list[Decision] = []
        with self.db.tx() as s:
            for decision in decisions:
                stored.append(add_decision_in(s, decision, actor, self.db.ledger_key))
        return stored

    def decisions(self, version_id: str | None = None) -> list[Decision]:
        with self.db.read() as s:
            q = select(DecisionRow).order_by(DecisionRow.id)
            if version_id is not None:
                q = q.where(DecisionRow.version_id == version_id)
            return [Decision.model_validate(r.record) for r in s.execute(q).scalars()]

    def add_approval(self, version_id: str, approver: str, reason: str, overrides: list[str] | None = None, *,
                     decision_id: int) -> None:
        """Record an approval of one decision of the version (it approves that decision only, once)."""
        self.version(version_id)
        with self.db.tx() as s:
            d = s.get(DecisionRow, decision_id)
            if d is None or d.version_id != version_id:
                raise NotFoundError(f"no decision {decision_id} of {version_id} to approve")
            row = ApprovalRow(version_id=version_id, approver=approver, reason=reason,
                              overrides=list(overrides or []), created_at=utcnow(), decision_id=decision_id)
            s.add(row)
            s.flush()
            ledger_mod.append(s, actor=approver, kind="approval", subject=version_id,
                              payload={"approval_id": row.id, "decision_id": decision_id, "reason": reason,
                                       "overrides": list(overrides or [])}, key=self.db.ledger_key)

    def approvals(self, version_id: str) -> list[Approval]:
        with self.db.read() as s:
            rows = s.execute(select(ApprovalRow).where(ApprovalRow.version_id == version_id)
                             .order_by(ApprovalRow.id)).scalars()
            return [Approval(version=r.version_id, approver=r.approver, reason=r.reason,
                             overrides=list(r.overrides), created_at=r.created_at, decision_id=r.decision_id)
                    for r in rows]
