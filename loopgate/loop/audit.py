"""Accountability verbs: verify the ledger (and the stored files), read the ledger, collect garbage."""

from __future__ import annotations

from loopgate.loop.outcomes import AuditReport, GcOutcome
from loopgate.loop.workspace import Workspace, current_user
from loopgate.records import LedgerEntry
from loopgate.store.ledger import SignReport


def verify(ws: Workspace, *, artifacts: bool = False, expect_head: str | None = None) -> AuditReport:
    """The hash chain walked end to end, the tables replayed from it (a row the ledger does not account for is
    named); with ``artifacts`` every blob and loadable copy re-hashed too; with
    ``expect_head`` the chain must still hold that head hash (recorded outside the database earlier)."""
    ledger = ws.store.verify_ledger(expect_head=expect_head)
    state = ws.store.verify_state()
    files = ws.store.verify_artifacts() if artifacts else None
    return AuditReport(ok=ledger.ok and not state and (files is None or files.ok), ledger=ledger, artifacts=files,
                       state_problems=state)


def sign_ledger(ws: Workspace, *, actor: str | None = None) -> SignReport:
    """Adopt ``LOOPGATE_LEDGER_KEY`` on a registry written (partly) without it: every unsigned entry is signed,
    after the chain verifies; the ledger records who did it."""
    return ws.store.sign_ledger(actor=actor or current_user())


def ledger_tail(ws: Workspace, limit: int = 50) -> list[LedgerEntry]:
    """The last ``limit`` ledger entries, oldest first."""
    return ws.store.ledger()[-limit:]


def collect_garbage(ws: Workspace, *, keep_latest: int = 1, dry_run: bool = False, actor: str | None = None
                    ) -> GcOutcome:
    """Delete artifacts no channel needs (never a channel's version, its rollback target or an adapter base)."""
    return GcOutcome(**ws.store.gc(keep_latest=keep_latest, dry_run=dry_run, actor=actor or current_user()))
