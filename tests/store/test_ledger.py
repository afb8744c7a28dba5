"""Ledger tamper detection: edit, delete, truncate, reorder and insert entries straight in the database
(behind the ORM's back), and check that both Store.verify_ledger and `loopgate audit verify` catch each."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, update

from loopgate.store import Store
from loopgate.store.db import LedgerRow
from loopgate.store.ledger import GENESIS, entry_hash


@pytest.fixture
def ledger_ws(workspace: Any) -> Any:
    """A workspace whose ledger holds ≥ 8 entries (line registrations, versions, channel moves)."""
    src = workspace.root / "src"
    src.mkdir()
    for i in range(3):
        (src / "model.safetensors").write_bytes(f"w{i}".encode())
        workspace.store.add_version("base", {"model.safetensors": src / "model.safetensors"}, actor="ana")
    workspace.store.move_channels([("base", "production", "base@1")], kind="release", reason="r1", actor="ana")
    workspace.store.move_channels([("base", "production", "base@2")], kind="release", reason="r2", actor="ana")
    assert workspace.store.verify_ledger().ok and workspace.store.verify_ledger().entries >= 8
    return workspace


def db(ws: Any) -> sqlite3.Connection:
    return sqlite3.connect(ws.store.home / "registry.db", isolation_level=None)


def rows(ws: Any) -> list[tuple[Any, ...]]:
    with db(ws) as c:
        return c.execute("SELECT seq, ts, actor, kind, subject, payload, prev_hash, hash FROM ledger "
                         "ORDER BY seq").fetchall()


def assert_detected(ws: Any, cli: Callable[..., Any], first_bad: int, problem: str) -> None:
    rep = ws.store.verify_ledger()
    assert not rep.ok
    assert rep.first_bad_seq == first_bad, rep.problem
    assert problem in rep.problem
    res = cli("audit", "verify", "--json", workspace=ws.root)
    assert res.code == 1
    assert res.json()["first_bad_seq"] == first_bad and res.json()["ok"] is False
    plain = cli("audit", "verify", workspace=ws.root)
    assert plain.code == 1 and f"first bad entry: {first_bad}" in plain.err and "Traceback" not in plain.err


def test_intact_ledger_verifies(ledger_ws: Any, cli: Callable[..., Any]) -> None:
    res = cli("audit", "verify", "--json", workspace=ledger_ws.root)
    assert res.code == 0 and res.json()["ok"] is True
    assert res.json()["entries"] == len(rows(ledger_ws))
    assert res.json()["head_hash"] == rows(ledger_ws)[-1][7]
    log = cli("audit", "log", "--json", "--limit", "3", workspace=ledger_ws.root)
    assert log.code == 0 and [e["seq"] for e in log.json()] == [r[0] for r in rows(ledger_ws)[-3:]]
    assert rows(ledger_ws)[0][6] == GENESIS


def test_edited_payload_is_detected(ledger_ws: Any, cli: Callable[..., Any]) -> None:
    with db(ledger_ws) as c:
        c.execute("UPDATE ledger SET payload = replace(payload, 'r1', 'r9') WHERE kind = 'channel.release' "
                  "AND payload LIKE '%r1%'")
        (seq,) = c.execute("SELECT seq FROM ledger WHERE payload LIKE '%r9%'").fetchone()
    assert_detected(ledger_ws, cli, seq, "was edited")


def test_edit_through_sqlalchemy_core_is_detected(ledger_ws: Any, cli: Callable[..., Any]) -> None:
    with ledger_ws.store.engine.begin() as conn:  # Core bypasses the ORM's immutability guard
        conn.execute(update(LedgerRow).where(LedgerRow.seq == 3).values(actor="mallory"))
    assert_detected(ledger_ws, cli, 3, "was edited")


def test_edited_entry_with_recomputed_hash_breaks_the_next_link(ledger_ws: Any, cli: Callable[..., Any]) -> None:
    seq, ts, actor, kind, subject, payload, prev, _ = rows(ledger_ws)[4]
    forged = entry_hash(seq, ts, "mallory", kind, subject, payload, prev)
    with db(ledger_ws) as c:
        c.execute("UPDATE ledger SET actor = 'mallory', hash = ? WHERE seq = ?", (forged, seq))
    assert_detected(ledger_ws, cli, seq + 1, "does not chain")


def test_deleted_middle_entry_is_detected(ledger_ws: Any, cli: Callable[..., Any]) -> None:
    with db(ledger_ws) as c:
        c.execute("DELETE FROM ledger WHERE seq = 4")
    assert_detected(ledger_ws, cli, 5, "entry 4 was deleted")


def test_deleted_middle_entry_with_renumbering_is_detected(ledger_ws: Any, cli: Callable[..., Any]) -> None:
    with ledger_ws.store.engine.begin() as conn:
        conn.execute(delete(LedgerRow).where(LedgerRow.seq == 4))
        n = len(rows(ledger_ws)) + 1
        for seq in range(5, n + 1):
            conn.execute(update(LedgerRow).where(LedgerRow.seq == seq).values(seq=seq - 1))
    assert_detected(ledger_ws, cli, 4, "does not chain")


def test_deleted_last_entries_are_caught_by_the_anchor(ledger_ws: Any, cli: Callable[..., Any]) -> None:
    n = len(rows(ledger_ws))
    with db(ledger_ws) as c:
        c.execute("DELETE FROM ledger WHERE seq > ?", (n - 2,))
    assert_detected(ledger_ws, cli, n - 1, "deleted from the end")


def test_reordered_entries_are_detected(ledger_ws: Any, cli: Callable[..., Any]) -> None:
    with db(ledger_ws) as c:  # swap the seq of entries 3 and 4 (via a free number: seq is the key)
        c.execute("UPDATE ledger SET seq = -1 WHERE seq = 3")
        c.execute("UPDATE ledger SET seq = 3 WHERE seq = 4")
        c.execute("UPDATE ledger SET seq = 4 WHERE seq = -1")
    assert_detected(ledger_ws, cli, 3, "does not chain")


def test_inserted_forged_entry_is_detected(ledger_ws: Any, cli: Callable[..., Any]) -> None:
    before = rows(ledger_ws)
    prev_hash = before[2][7]  # a forger who even links the new entry correctly to entry 3
    ts, payload = before[3][1], '{"from":null,"to":"base@3"}'
    forged = (4, ts, "mallory", "channel.release", "base/production", payload, prev_hash,
              entry_hash(4, ts, "mallory", "channel.release", "base/production", payload, prev_hash))
    with db(ledger_ws) as c:
        for seq in range(len(before), 3, -1):  # make room at seq 4
            c.execute("UPDATE ledger SET seq = ? WHERE seq = ?", (seq + 1, seq))
        c.execute("INSERT INTO ledger VALUES (?, ?, ?, ?, ?, ?, ?, ?)", forged)
    assert_detected(ledger_ws, cli, 5, "does not chain")


def test_forged_entry_appended_after_the_head_is_detected(ledger_ws: Any, cli: Callable[..., Any]) -> None:
    *_, last = rows(ledger_ws)
    seq, prev_hash, payload = last[0] + 1, last[7], '{"approver":"mallory"}'
    h = entry_hash(seq, last[1], "mallory", "approval", "base@3", payload, prev_hash)
    with db(ledger_ws) as c:
        c.execute("INSERT INTO ledger VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                  (seq, last[1], "mallory", "approval", "base@3", payload, prev_hash, h))
    assert_detected(ledger_ws, cli, seq, "appended outside Loopgate")


def test_anchor_never_moves_back(ledger_ws: Any) -> None:
    from loopgate.store.ledger import write_anchor

    n = len(rows(ledger_ws))
    write_anchor(ledger_ws.store.anchor, 2, rows(ledger_ws)[1][7])  # a slow writer reporting an older head
    assert ledger_ws.store.verify_ledger().ok
    assert f'"seq": {n}' in ledger_ws.store.anchor.read_text()


def test_ledger_records_every_kind_of_change(ledger_ws: Any) -> None:
    kinds = [e.kind for e in ledger_ws.store.ledger()]
    assert kinds.count("line.register") == 4 and kinds.count("version.create") == 3
    assert kinds.count("channel.release") == 2
    e = ledger_ws.store.ledger()[-1]
    assert (e.actor, e.subject, e.payload["from"], e.payload["to"]) == ("ana", "base/production", "base@1", "base@2")


def test_store_from_another_process_sees_tampering(tmp_path: Path, ledger_ws: Any) -> None:
    with db(ledger_ws) as c:
        c.execute("UPDATE ledger SET subject = 'x' WHERE seq = 2")
    fresh = Store(ledger_ws.store.home)
    assert fresh.verify_ledger().first_bad_seq == 2
    fresh.close()
