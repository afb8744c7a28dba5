"""The ledger: an append-only, hash-chained record of every change to the registry.

Each entry's hash covers its own fields and the previous entry's hash (canonical JSON), so an edited,
deleted, inserted or reordered entry breaks the chain at the first bad entry. The head (last seq and
hash) is kept in the database (``ledger_head``), where every client sees it, and moves in the same
transaction as the entries it covers: dropping entries from the end, or appending behind Loopgate's back,
is caught, and a crash can never leave the head out of step (there is no moment between the two).

Appends are serialised on the head row (``SELECT ... FOR UPDATE``; SQLite has one writer at a time), so
sequence numbers come from the database, never from two clients' guesses.

With ``LOOPGATE_LEDGER_KEY`` set, every entry carries an HMAC-SHA256 of its hash and the head an HMAC of
``seq:hash``: whoever can write to the database but does not hold the key can no longer rewrite history
and re-chain it, because the signatures give them away.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from loopgate.errors import LoopgateError
from loopgate.hashing import canonical_json, sha256_json
from loopgate.records import LedgerEntry, utcnow
from loopgate.store.tables.ledger import HEAD_ID, LedgerHeadRow, LedgerRow

GENESIS = "0" * 64
DELETED = -1  # the seq of a head row re-created after the real one was deleted


def entry_hash(seq: int, ts: str, actor: str, kind: str, subject: str, payload: str, prev_hash: str) -> str:
    return sha256_json({"seq": seq, "ts": ts, "actor": actor, "kind": kind, "subject": subject,
                        "payload": payload, "prev_hash": prev_hash})


def sign(key: str, message: str) -> str:
    """HMAC-SHA256 of ``message`` under ``key`` (hex)."""
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()


def _head_message(seq: int, hash_: str) -> str:
    return f"{seq}:{hash_}"


def lock_head(session: Session) -> LedgerHeadRow:
    """The head row, locked until the transaction ends (PostgreSQL; SQLite's writer lock already is one)."""
    head = session.execute(select(LedgerHeadRow).where(LedgerHeadRow.id == HEAD_ID).with_for_update()
                           ).scalar_one_or_none()
    if head is None:  # deleted behind Loopgate's back: a stand-in (seq -1) that never moves, and verify reports
        head = LedgerHeadRow(id=HEAD_ID, seq=DELETED, hash=GENESIS, signature=None)
        session.add(head)
        session.flush()
    return head


def append(session: Session, *, actor: str, kind: str, subject: str, payload: dict[str, Any],
           key: str | None = None) -> LedgerRow:
    """Append one entry inside the caller's transaction (so the change and its record commit together),
    signed with ``key`` or the key the store put in the session (``Database.tx`` in ``store/session.py``)."""
    key = key if key is not None else session.info.get("ledger_key")
    head = lock_head(session)
    last = session.execute(select(LedgerRow).order_by(LedgerRow.seq.desc()).limit(1)).scalar_one_or_none()
    seq = (last.seq + 1) if last else 1
    prev = last.hash if last else GENESIS
    ts = utcnow().isoformat()
    body = canonical_json(payload)
    h = entry_hash(seq, ts, actor, kind, subject, body, prev)
    row = LedgerRow(seq=seq, ts=ts, actor=actor, kind=kind, subject=subject, payload=body, prev_hash=prev,
                    hash=h, signature=sign(key, h) if key else None)
    session.add(row)
    # The head follows only a ledger that was in step with it: moving it on top of entries slipped in
    # behind Loopgate's back (or past a truncation) would bless them, so verify keeps flagging those.
    if (head.seq, head.hash) == ((last.seq, last.hash) if last else (0, GENESIS)):
        head.seq, head.hash = seq, h
        head.signature = sign(key, _head_message(seq, h)) if key else None
    session.flush()
    return row


class VerifyReport(BaseModel):
    ok: bool
    entries: int
    first_bad_seq: int | None = None
    problem: str = ""
    head_hash: str = GENESIS
    signed: bool = False  # the signatures were checked (LOOPGATE_LEDGER_KEY is set)


def to_entry(row: LedgerRow) -> LedgerEntry:
    return LedgerEntry(seq=row.seq, ts=row.ts, actor=row.actor, kind=row.kind, subject=row.subject,
                       payload=json.loads(row.payload), prev_hash=row.prev_hash, hash=row.hash)


def verify(session: Session, key: str | None = None, *, expect_head: str | None = None) -> VerifyReport:
    """Walk the chain from the first entry and check the head; report the first entry that does not fit.

    ``expect_head`` is a head hash recorded outside the database earlier (``audit verify --json``'s
    ``head_hash``, kept in CI logs): the chain must still hold it. That catches what nothing inside the database
    can — the newest entries deleted and the head row put back as it was before them.

    Run it on one snapshot of the database (the caller's transaction), or a writer committing mid-walk
    would look like tampering.
    """
    def bad(seq: int | None, problem: str, count: int) -> VerifyReport:
        return VerifyReport(ok=False, entries=count, first_bad_seq=seq, problem=problem, signed=key is not None)

    head = session.execute(select(LedgerHeadRow).where(LedgerHeadRow.id == HEAD_ID)).scalar_one_or_none()
    prev = GENESIS
    expected_seq = 1
    count = 0
    hash_at: dict[int, str] = {}
    found_expected = expect_head in (None, GENESIS)
    for row in session.execute(select(LedgerRow).order_by(LedgerRow.seq)).scalars():
        count += 1
        problem = _entry_problem(row, expected_seq, prev, key)
        if problem is not None:
            return bad(row.seq, problem, count)
        if row.seq == (head.seq if head else -1):
            hash_at[row.seq] = row.hash
        if expect_head is not None and row.hash == expect_head:
            found_expected = True
        prev = row.hash
        expected_seq += 1
    found = _head_problem(head, count, hash_at, key)
    if found is not None:
        return bad(found[0], found[1], count)
    if not found_expected:
        return bad(None, f"the chain no longer holds the head {expect_head} recorded earlier: entries were cut "
                         "from the end and the head row put back, or the recorded hash belongs to another registry",
                   count)
    return VerifyReport(ok=True, entries=count, head_hash=prev, signed=key is not None)


def _entry_problem(row: LedgerRow, expected_seq: int, prev: str, key: str | None) -> str | None:
    """Why one entry does not fit the chain after ``prev`` (its number, link, hash, signature), or None."""
    if row.seq != expected_seq:
        gap = (f"entry {expected_seq} was" if row.seq - 1 == expected_seq
               else f"entries {expected_seq}..{row.seq - 1} were")
        return f"entry {row.seq} follows entry {expected_seq - 1}: {gap} deleted"
    if row.prev_hash != prev:
        return (f"entry {row.seq} does not chain to entry {row.seq - 1} "
                "(an entry was inserted, deleted or reordered before it)")
    actual = entry_hash(row.seq, row.ts, row.actor, row.kind, row.subject, row.payload, row.prev_hash)
    if actual != row.hash:
        return f"entry {row.seq} ({row.kind} {row.subject}) was edited: its content no longer matches its hash"
    if key is not None:
        if row.signature is None:
            return (f"entry {row.seq} ({row.kind} {row.subject}) is unsigned: it was written "
                    "without LOOPGATE_LEDGER_KEY, by a client or a database writer that does "
                    "not hold the key")
        if not hmac.compare_digest(row.signature, sign(key, row.hash)):
            return (f"entry {row.seq} ({row.kind} {row.subject}) has a bad signature: it was "
                    "forged, or signed with another key")
    return None


def _head_problem(head: LedgerHeadRow | None, count: int, hash_at: dict[int, str],
                  key: str | None) -> tuple[int | None, str] | None:
    """Why the recorded head does not fit a chain of ``count`` entries: (the first bad seq, the problem)."""
    if head is None or head.seq == DELETED:
        return None, "the ledger's head record (table ledger_head) was deleted"
    if head.seq > count:
        return count + 1, (f"the ledger ends at entry {count} but entry {head.seq} was recorded: "
                           "entries were deleted from the end")
    if head.seq >= 1 and hash_at.get(head.seq) != head.hash:
        return head.seq, f"entry {head.seq} differs from the recorded head: the chain was rewritten"
    if head.seq < count:
        # the head moves in the same transaction as every entry Loopgate writes: a tail past it was not
        return head.seq + 1, (f"entries {head.seq + 1}..{count} come after the recorded head "
                              f"(entry {head.seq}): they were appended outside Loopgate")
    if key is not None and count and (head.signature is None or not hmac.compare_digest(
            head.signature, sign(key, _head_message(head.seq, head.hash)))):
        return head.seq, (f"the recorded head (entry {head.seq}) is not signed with the key: it was "
                          "moved by someone who does not hold LOOPGATE_LEDGER_KEY")
    return None


class SignReport(BaseModel):
    signed: int  # entries that had no signature and have one now
    entries: int  # entries in the ledger before the ``ledger.sign`` entry recording this


def sign_unsigned(session: Session, key: str) -> SignReport:
    """Sign every unsigned entry and the head with ``key``, inside the caller's write transaction: how a registry
    that was written before ``LOOPGATE_LEDGER_KEY`` was set (or by a client without it) adopts the key.

    Signing vouches for history, so it is refused unless the chain and the head verify (without signatures) on
    this very snapshot, and unless every signature already there is this key's: an entry signed with another
    key is either tampering or a rotation, and neither is something to paper over.
    """
    lock_head(session)  # no writer moves the ledger between the check and the signatures
    report = verify(session, None)
    if not report.ok:
        raise LoopgateError(f"the ledger does not verify, so it cannot be signed: {report.problem} (first bad "
                            f"entry: {report.first_bad_seq}); `loopgate audit verify` says more")
    signed = 0
    cols = (LedgerRow.seq, LedgerRow.kind, LedgerRow.subject, LedgerRow.hash, LedgerRow.signature)
    for seq, kind, subject, hash_, signature in session.execute(select(*cols).order_by(LedgerRow.seq)):
        if signature is None:
            # the one change an entry ever takes: a missing signature added, once (a plain UPDATE, because the
            # ORM refuses every update of a ledger row; the chain hashes never cover the signature)
            session.execute(update(LedgerRow).where(LedgerRow.seq == seq, LedgerRow.signature.is_(None))
                            .values(signature=sign(key, hash_)))
            signed += 1
        elif not hmac.compare_digest(signature, sign(key, hash_)):
            raise LoopgateError(f"entry {seq} ({kind} {subject}) is signed with another key: it was forged, or "
                                "the key changed; nothing was signed")
    head = lock_head(session)
    if report.entries:
        head.signature = sign(key, _head_message(head.seq, head.hash))
    session.flush()
    return SignReport(signed=signed, entries=report.entries)


def adopt_file_anchor(session: Session, anchor: Path) -> None:
    """Carry a ``ledger.head`` file (the anchor before the head moved into the database) over to the head
    row, so a truncation or rewrite it would have caught is still caught; the file is then renamed."""
    head = lock_head(session)
    try:
        recorded = json.loads(anchor.read_text())
        seq, hash_ = int(recorded["seq"]), str(recorded["hash"])[:64]
    except (ValueError, KeyError, TypeError):  # an edited anchor: reported as a rewrite of the head entry
        seq, hash_ = head.seq, "the ledger.head file was unreadable"[:64]
    row = session.get(LedgerRow, seq) if seq >= 1 else None
    in_chain = (seq == 0 and hash_ == GENESIS) or (row is not None and row.hash == hash_)
    # a file behind a chain that contains it is what the old writer left when it died between its commit and
    # the file write (or a tail appended later, which the file could not tell apart): the database's head
    # stands. A file ahead of the chain, or naming an entry the chain no longer holds, keeps being reported.
    if not in_chain or seq > head.seq:
        head.seq, head.hash, head.signature = seq, hash_, None
    session.flush()
