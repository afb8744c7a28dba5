"""The repository of the ledger as a whole: entries for events that change no table, reading it, signing it, and
verifying it and the state it records (the chain itself, entry by entry, is :mod:`loopgate.store.ledger`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from loopgate.errors import LoopgateError
from loopgate.records import LedgerEntry
from loopgate.store import ledger as ledger_mod
from loopgate.store.session import Repository
from loopgate.store.tables import ChannelRow, LedgerRow, VersionFileRow


class LedgerRepository(Repository):
    def record(self, kind: str, subject: str, payload: dict[str, Any], actor: str = "loopgate") -> None:
        """A ledger entry for an event that changes no table (an update started, a rollback cascade note)."""
        with self.db.tx() as s:
            ledger_mod.append(s, actor=actor, kind=kind, subject=subject, payload=payload, key=self.db.ledger_key)

    def ledger(self) -> list[LedgerEntry]:
        with self.db.read() as s:
            return [ledger_mod.to_entry(r) for r in s.execute(select(LedgerRow).order_by(LedgerRow.seq)).scalars()]

    def sign_ledger(self, *, actor: str) -> ledger_mod.SignReport:
        """Sign the entries written without ``LOOPGATE_LEDGER_KEY`` (see ``ledger.sign_unsigned``), and record
        who vouched for them in a ``ledger.sign`` entry, signed like every entry after it."""
        key = self.db.ledger_key
        if not key:
            raise LoopgateError("LOOPGATE_LEDGER_KEY is not set: there is no key to sign the ledger with")
        with self.db.tx() as s:
            report = ledger_mod.sign_unsigned(s, key)
            ledger_mod.append(s, actor=actor, kind="ledger.sign", subject="ledger",
                              payload={"signed": report.signed, "entries": report.entries}, key=key)
        return report

    def verify_state(self) -> list[str]:
        """Every channel, move, decision, approval, token and line pin row that disagrees with the ledger's replay
        (:mod:`loopgate.store.replay`), read on one snapshot."""
        from loopgate.store.replay import state_problems

        with self.db.snapshot() as s:
            problems = state_problems(s)
            for row in s.execute(select(ChannelRow).order_by(ChannelRow.line, ChannelRow.name)).scalars():
                shas = s.execute(select(VersionFileRow.sha256).where(VersionFileRow.version_id == row.version_id))
                if any(not self.artifacts.has(sha) for sha in shas.scalars()):
                    problems.append(f"channel {row.line}/{row.name} points at {row.version_id}, whose files were "
                                    "collected or are missing: it cannot be served")
            return problems

    def verify_ledger(self, *, expect_head: str | None = None) -> ledger_mod.VerifyReport:
        """The hash chain, the head, (with ``LOOPGATE_LEDGER_KEY``) the signatures and (with ``expect_head``) a
        head recorded outside the database, on one snapshot."""
        with self.db.snapshot() as s:
            return ledger_mod.verify(s, self.db.ledger_key, expect_head=expect_head)
