"""The ledger: an append-only, hash-chained record of every change to the registry.

Each entry's hash covers its own fields and the previous entry's hash (canonical JSON), so an edited,
deleted, inserted or reordered entry breaks the chain at the first bad entry. The head (last seq and
hash) is also anchored in a file beside the database, so that dropping entries from the end is caught.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from loopgate.hashing import canonical_json, sha256_json
from loopgate.records import LedgerEntry, utcnow
from loopgate.store.db import LedgerRow

GENESIS = "0" * 64


def entry_hash(seq: int, ts: str, actor: str, kind: str, subject: str, payload: str, prev_hash: str) -> str:
    return sha256_json({"seq": seq, "ts": ts, "actor": actor, "kind": kind, "subject": subject,
                        "payload": payload, "prev_hash": prev_hash})


def append(session: Session, *, actor: str, kind: str, subject: str, payload: dict[str, Any]) -> LedgerRow:
    """Append one entry inside the caller's transaction (so the change and its record commit together)."""
    last = session.execute(select(LedgerRow).order_by(LedgerRow.seq.desc()).limit(1)).scalar_one_or_none()
    seq = (last.seq + 1) if last else 1
    prev = last.hash if last else GENESIS
    ts = utcnow().isoformat()
    body = canonical_json(payload)
    row = LedgerRow(seq=seq, ts=ts, actor=actor, kind=kind, subject=subject, payload=body, prev_hash=prev,
                    hash=entry_hash(seq, ts, actor, kind, subject, body, prev))
    session.add(row)
    return row


class VerifyReport(BaseModel):
    ok: bool
    entries: int
    first_bad_seq: int | None = None
    problem: str = ""
    head_hash: str = GENESIS


def to_entry(row: LedgerRow) -> LedgerEntry:
    return LedgerEntry(seq=row.seq, ts=row.ts, actor=row.actor, kind=row.kind, subject=row.subject,
                       payload=json.loads(row.payload), prev_hash=row.prev_hash, hash=row.hash)


def verify(session: Session, anchor: Path | None = None) -> VerifyReport:
    """Walk the chain from the first entry; report the first entry that does not fit."""
    prev = GENESIS
    expected_seq = 1
    count = 0
    for row in session.execute(select(LedgerRow).order_by(LedgerRow.seq)).scalars():
        count += 1
        if row.seq != expected_seq:
            gap = (f"entry {expected_seq} was" if row.seq - 1 == expected_seq
                   else f"entries {expected_seq}..{row.seq - 1} were")
            return VerifyReport(ok=False, entries=count, first_bad_seq=row.seq,
                                problem=f"entry {row.seq} follows entry {expected_seq - 1}: {gap} deleted")
        if row.prev_hash != prev:
            return VerifyReport(ok=False, entries=count, first_bad_seq=row.seq,
                                problem=f"entry {row.seq} does not chain to entry {row.seq - 1} "
                                        "(an entry was inserted, deleted or reordered before it)")
        actual = entry_hash(row.seq, row.ts, row.actor, row.kind, row.subject, row.payload, row.prev_hash)
        if actual != row.hash:
            return VerifyReport(ok=False, entries=count, first_bad_seq=row.seq,
                                problem=f"entry {row.seq} ({row.kind} {row.subject}) was edited: "
                                        "its content no longer matches its hash")
        prev = row.hash
        expected_seq += 1
    if anchor is not None and anchor.exists():
        try:
            head = json.loads(anchor.read_text())
            int(head["seq"]), str(head["hash"])
        except (ValueError, KeyError, TypeError):
            return VerifyReport(ok=False, entries=count, first_bad_seq=None,
                                problem=f"the head anchor {anchor} is unreadable: it was edited")
        if head["seq"] > count:
            return VerifyReport(ok=False, entries=count, first_bad_seq=count + 1,
                                problem=f"the ledger ends at entry {count} but entry {head['seq']} was "
                                        "recorded: entries were deleted from the end")
        if head["seq"] >= 1:
            head_row = session.get(LedgerRow, head["seq"])
            if head_row is None or head_row.hash != head["hash"]:
                return VerifyReport(ok=False, entries=count, first_bad_seq=head["seq"],
                                    problem=f"entry {head['seq']} differs from the recorded head: "
                                            "the chain was rewritten")
        if head["seq"] < count:
            # Loopgate moves the anchor after every commit, so a well-chained tail past it was written by
            # something else (or the process died in the instant between its commit and the anchor write)
            return VerifyReport(ok=False, entries=count, first_bad_seq=head["seq"] + 1,
                                problem=f"entries {head['seq'] + 1}..{count} come after the recorded head "
                                        f"(entry {head['seq']}): they were appended outside Loopgate")
    return VerifyReport(ok=True, entries=count, head_hash=prev)


def write_anchor(anchor: Path, seq: int, hash_: str) -> None:
    """Record the head outside the database (atomic replace). Written after each commit.

    The anchor only moves forward: a writer that committed seq 5 but reaches this line after another
    process anchored seq 6 must not pull the anchor back (that would hide a later truncation).
    """
    if anchor.exists():
        try:
            if json.loads(anchor.read_text())["seq"] > seq:
                return
        except (ValueError, KeyError):
            pass  # an unreadable anchor is replaced by the true head
    tmp = anchor.with_name(f"{anchor.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"seq": seq, "hash": hash_}))
    os.replace(tmp, anchor)
