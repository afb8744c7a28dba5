"""The state replayed from the ledger: every channel, channel move, decision, approval, token and line pin row
must be what the ledger says it is.

The hash chain proves the ledger was not edited; this proves the tables were not edited beside it. A forged
"pass" decision, a channel pointer moved by hand, an approval slipped in, a token's hash swapped: each is a
row the ledger does not account for, and :func:`state_problems` names it. Records written before an entry's
payload carried a field (a decision's id is always there; an approval's or a move's id only since #26) are
matched in commit order, which is the ledger's order too (a row and its entry commit in one transaction).
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from loopgate.store.tables import ApprovalRow, ChannelMoveRow, ChannelRow, DecisionRow, LedgerRow, LinePinRow, TokenRow

MAX_PROBLEMS = 50  # a registry edited wholesale is named by its first rows, not by thousands


def state_problems(s: Session) -> list[str]:
    """Every table row that disagrees with the ledger's replay, one sentence each (empty: consistent)."""
    entries: dict[str, list[tuple[LedgerRow, dict[str, Any]]]] = defaultdict(list)
    for row in s.execute(select(LedgerRow).order_by(LedgerRow.seq)).scalars():
        family = "channel" if row.kind.startswith("channel.") and row.kind != "channel.refused" else row.kind
        try:
            payload = json.loads(row.payload)
        except ValueError:
            payload = {}
        entries[family].append((row, payload if isinstance(payload, dict) else {}))
    problems = (_decisions(s, entries["decision"]) + _approvals(s, entries["approval"])
                + _moves(s, entries["channel"]) + _tokens(s, entries["token.create"], entries["token.revoke"])
                + _pins(s, entries["line.pin"] + entries["line.unpin"]))
    return problems[:MAX_PROBLEMS]


def _decisions(s: Session, entries: list[tuple[LedgerRow, dict[str, Any]]]) -> list[str]:
    out: list[str] = []
    recorded = {p.get("decision_id"): (e, p) for e, p in entries}
    rows = {r.id: r for r in s.execute(select(DecisionRow).order_by(DecisionRow.id)).scalars()}
    for rid, r in rows.items():
        if rid not in recorded:
            out.append(f"decision {rid} ({r.version_id}, {r.verdict}) has no ledger entry: it was written outside "
                       "Loopgate")
            continue
        e, p = recorded[rid]
        record = r.record or {}
        gates = {g.get("name"): g.get("verdict") for g in record.get("gates", []) if isinstance(g, dict)}
        if (r.version_id != e.subject or r.verdict != p.get("verdict") or record.get("verdict") != p.get("verdict")
                or r.policy_sha256 != p.get("policy_sha256") or ("gates" in p and gates != p["gates"])):
            out.append(f"decision {rid} ({r.version_id}) says {r.verdict}/{record.get('verdict')} but ledger entry "
                       f"{e.seq} recorded {p.get('verdict')} for {e.subject}: the row was edited")
    for did, (e, _) in recorded.items():
        if did not in rows:
            out.append(f"decision {did} of {e.subject} (ledger entry {e.seq}) is missing from the decisions table")
    return out


def _approvals(s: Session, entries: list[tuple[LedgerRow, dict[str, Any]]]) -> list[str]:
    out: list[str] = []
    rows = list(s.execute(select(ApprovalRow).order_by(ApprovalRow.id)).scalars())
    for i in range(max(len(rows), len(entries))):
        if i >= len(entries):
            r = rows[i]
            out.append(f"approval {r.id} of {r.version_id} by {r.approver} has no ledger entry: it was written "
                       "outside Loopgate")
            continue
        e, p = entries[i]
        if i >= len(rows):
            out.append(f"the approval of {e.subject} by {e.actor} (ledger entry {e.seq}) is missing from the "
                       "approvals table")
            continue
        r = rows[i]
        same = (r.version_id == e.subject and r.approver == e.actor and r.reason == p.get("reason")
                and list(r.overrides) == list(p.get("overrides", []))
                and ("decision_id" not in p or r.decision_id == p["decision_id"])
                and ("approval_id" not in p or r.id == p["approval_id"]))
        if not same:
            out.append(f"approval {r.id} ({r.version_id} by {r.approver}, decision {r.decision_id}) disagrees with "
                       f"ledger entry {e.seq} ({e.subject} by {e.actor}, decision {p.get('decision_id')})")
    return out


def _moves(s: Session, entries: list[tuple[LedgerRow, dict[str, Any]]]) -> list[str]:
    out: list[str] = []
    rows = list(s.execute(select(ChannelMoveRow).order_by(ChannelMoveRow.id)).scalars())
    pointers: dict[tuple[str, str], str] = {}
    for i in range(max(len(rows), len(entries))):
        if i < len(entries):
            e, p = entries[i]
            line, _, channel = e.subject.partition("/")
            pointers[(line, channel)] = p.get("to")  # type: ignore[assignment]
        if i >= len(entries):
            r = rows[i]
            out.append(f"channel move {r.id} ({r.line}/{r.channel} → {r.to_version}) has no ledger entry")
            continue
        if i >= len(rows):
            out.append(f"the move of {e.subject} to {p.get('to')} (ledger entry {e.seq}) is missing from the "
                       "channel history")
            continue
        r = rows[i]
        if ((r.line, r.channel) != (line, channel) or r.to_version != p.get("to") or r.from_version != p.get("from")
                or f"channel.{r.kind}" != e.kind or r.decision_id != p.get("decision_id")):
            out.append(f"channel move {r.id} ({r.line}/{r.channel}: {r.from_version} → {r.to_version}, {r.kind}) "
                       f"disagrees with ledger entry {e.seq} ({e.subject}: {p.get('from')} → {p.get('to')}, "
                       f"{e.kind})")
    live = {(r.line, r.name): r.version_id for r in s.execute(select(ChannelRow)).scalars()}
    for key in sorted(set(live) | set(pointers)):
        if live.get(key) != pointers.get(key):
            out.append(f"channel {key[0]}/{key[1]} points at {live.get(key) or 'nothing'} but the ledger moved it "
                       f"to {pointers.get(key) or 'nothing'}: it was moved outside Loopgate")
    return out


def _tokens(s: Session, created: list[tuple[LedgerRow, dict[str, Any]]],
            revoked: list[tuple[LedgerRow, dict[str, Any]]]) -> list[str]:
    out: list[str] = []
    made = {e.subject: p for e, p in created}
    gone = {e.subject for e, _ in revoked}
    rows = {f"token/{r.id}": r for r in s.execute(select(TokenRow).order_by(TokenRow.id)).scalars()}
    for subject, r in rows.items():
        p = made.get(subject)
        if p is None:
            out.append(f"{subject} ({r.name}, {r.role}) has no ledger entry: it was created outside Loopgate")
            continue
        if (r.name != p.get("name") or r.role != p.get("role") or r.prefix != p.get("prefix")
                or ("token_sha256" in p and r.token_sha256 != p["token_sha256"])):
            out.append(f"{subject} ({r.name}, {r.role}) disagrees with its ledger entry ({p.get('name')}, "
                       f"{p.get('role')}): the row was edited")
        if (r.revoked_at is not None) != (subject in gone):
            state = "revoked" if r.revoked_at is not None else "live"
            out.append(f"{subject} ({r.name}) is {state} but the ledger says "
                       f"{'revoked' if subject in gone else 'live'}")
    for subject in made:
        if subject not in rows:
            out.append(f"{subject} (ledger) is missing from the tokens table")
    return out


def _pins(s: Session, entries: list[tuple[LedgerRow, dict[str, Any]]]) -> list[str]:
    """Replay ``line.pin``/``line.unpin`` in ledger order: the pinned lines must be the table's rows."""
    out: list[str] = []
    pinned: dict[str, tuple[LedgerRow, dict[str, Any]]] = {}
    for e, p in sorted(entries, key=lambda ep: ep[0].seq):
        if e.kind == "line.pin":
            pinned[e.subject] = (e, p)
        else:
            pinned.pop(e.subject, None)
    rows = {r.line: r for r in s.execute(select(LinePinRow).order_by(LinePinRow.line)).scalars()}
    for line, r in rows.items():
        if line not in pinned:
            out.append(f"line {line} is pinned (by {r.actor}) but the ledger has it unpinned: it was pinned outside "
                       "Loopgate")
            continue
        e, p = pinned[line]
        if r.actor != e.actor or r.reason != p.get("reason") or r.production != p.get("production"):
            out.append(f"the pin of {line} (by {r.actor}) disagrees with ledger entry {e.seq} (by {e.actor}): the "
                       "row was edited")
    for line, (e, _) in pinned.items():
        if line not in rows:
            out.append(f"line {line} was pinned by {e.actor} (ledger entry {e.seq}) but is not in the pins table: "
                       "it was unpinned outside Loopgate")
    return out
