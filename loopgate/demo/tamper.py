"""The demo's tamper step: copy the registry, edit one ledger entry behind the store's back, and let
``audit verify`` find it — on SQLite and on PostgreSQL alike (the copying and the edit are the store's:
:mod:`loopgate.store.copy`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loopgate.store import Store
from loopgate.store.copy import copy_registry, forge_middle_entry

FORGER = "mallory"

__all__ = ["FORGER", "copy_registry", "tamper_copy"]


def tamper_copy(store: Store, dest: Path) -> dict[str, Any]:
    """Copy the registry, edit the actor of the middle ledger entry in the copy (a plain SQL UPDATE, as someone
    with database access would), and verify the copy's chain: ``ok`` is false and names the edited entry."""
    copy = copy_registry(store, dest)
    try:
        middle, edited = forge_middle_entry(copy, FORGER)
        if edited != 1:  # a demo whose ledger is too short to edit is a bug in the story, not a user error
            raise RuntimeError(f"the tamper step edited {edited} ledger entries (entry {middle}), not one")
        report = copy.verify_ledger()
    finally:
        copy.close()
    return {"ok": report.ok, "first_bad_seq": report.first_bad_seq, "problem": report.problem}
