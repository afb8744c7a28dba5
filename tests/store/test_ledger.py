"""Ledger tamper detection: edit, delete, truncate, reorder and insert entries straight in the database
(behind the ORM's back), and check that both Store.verify_ledger and `loopgate audit verify` catch each —
on SQLite and on PostgreSQL; the head anchor in the database; signed entries (LOOPGATE_LEDGER_KEY)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from decided import release
from sqlalchemy import Connection, delete, text, update

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
    release(workspace.store, [("base", "production", "base@1")], kind="release", reason="r1", actor="ana")
    release(workspace.store, [("base", "production", "base@2")], kind="release", reason="r2", actor="ana")
    assert workspace.store.verify_ledger().ok and workspace.store.verify_ledger().entries >= 8
    return workspace


class Raw:
    """Plain SQL on the registry's database, past every Loopgate check (what a database writer can do)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        names = {f"p{i}": v for i, v in enumerate(params)}
        for i in range(len(params)):
            sql = sql.replace("?", f":p{i}", 1)
        return self.conn.execute(text(sql), names)


@contextmanager
def db(ws: Any) -> Iterator[Raw]:
    with ws.store.engine.begin() as conn:
        yield Raw(conn)


INSERT = "INSERT INTO ledger (seq, ts, actor, kind, subject, payload, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


def rows(ws: Any) -> list[tuple[Any, ...]]:
    with db(ws) as c:
        return [tuple(r) for r in c.execute("SELECT seq, ts, actor, kind, subject, payload, prev_hash, hash "
                                            "FROM ledger ORDER BY seq").fetchall()]


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
        c.execute(INSERT, forged)
    assert_detected(ledger_ws, cli, 5, "does not chain")


def test_forged_entry_appended_after_the_head_is_detected(ledger_ws: Any, cli: Callable[..., Any]) -> None:
    *_, last = rows(ledger_ws)
    seq, prev_hash, payload = last[0] + 1, last[7], '{"approver":"mallory"}'
    h = entry_hash(seq, last[1], "mallory", "approval", "base@3", payload, prev_hash)
    with db(ledger_ws) as c:
        c.execute(INSERT, (seq, last[1], "mallory", "approval", "base@3", payload, prev_hash, h))
    assert_detected(ledger_ws, cli, seq, "appended outside Loopgate")


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


def test_head_lives_in_the_database_and_moves_with_its_entries(ledger_ws: Any, tmp_path: Path) -> None:
    n = len(rows(ledger_ws))
    with db(ledger_ws) as c:
        assert tuple(c.execute("SELECT seq, hash FROM ledger_head").one()) == (n, rows(ledger_ws)[-1][7])
    assert not (ledger_ws.store.home / "ledger.head").exists()
    # a colleague's client (its own folder, the same database) sees the same head and the same verdict
    if ledger_ws.store.engine.dialect.name == "postgresql":
        other = Store(tmp_path / "colleague")
        other.record("note", "base", {"by": "colleague"}, actor="bo")
        other.close()
        assert ledger_ws.store.verify_ledger().ok and ledger_ws.store.verify_ledger().entries == n + 1


def test_deleted_head_record_is_detected(ledger_ws: Any, cli: Callable[..., Any]) -> None:
    with db(ledger_ws) as c:
        c.execute("DELETE FROM ledger_head")
    rep = ledger_ws.store.verify_ledger()
    assert not rep.ok and "head record" in rep.problem
    ledger_ws.store.record("note", "base", {"after": "the deletion"})  # a later write does not hide it
    rep = ledger_ws.store.verify_ledger()
    assert not rep.ok and "head record (table ledger_head) was deleted" in rep.problem


def test_without_a_key_a_cut_tail_with_its_head_put_back_goes_unseen(ledger_ws: Any) -> None:
    """The documented limit: a database writer who deletes the newest entries and moves the head back to
    match leaves a consistent ledger. With a key the moved head is caught (test_a_head_moved_without_the_key)."""
    n = len(rows(ledger_ws))
    with db(ledger_ws) as c:
        c.execute("DELETE FROM ledger WHERE seq > ?", (n - 2,))
        c.execute("UPDATE ledger_head SET seq = ?, hash = ?", (n - 2, rows(ledger_ws)[n - 3][7]))
    assert ledger_ws.store.verify_ledger().ok  # tamper-evident, not tamper-proof, without an external copy


def test_an_append_after_a_truncation_does_not_hide_it(ledger_ws: Any, cli: Callable[..., Any]) -> None:
    n = len(rows(ledger_ws))
    with db(ledger_ws) as c:
        c.execute("DELETE FROM ledger WHERE seq > ?", (n - 2,))
    ledger_ws.store.record("note", "base", {"after": "the cut"})  # takes seq n - 1: the head stays at n
    assert_detected(ledger_ws, cli, n, "deleted from the end")


def test_an_append_after_a_foreign_tail_does_not_bless_it(ledger_ws: Any, cli: Callable[..., Any]) -> None:
    *_, last = rows(ledger_ws)
    seq, prev_hash, payload = last[0] + 1, last[7], '{"approver":"mallory"}'
    with db(ledger_ws) as c:
        c.execute(INSERT, (seq, last[1], "mallory", "approval", "base@3", payload, prev_hash,
                           entry_hash(seq, last[1], "mallory", "approval", "base@3", payload, prev_hash)))
    ledger_ws.store.record("note", "base", {"after": "the forgery"})
    assert_detected(ledger_ws, cli, seq, "appended outside Loopgate")


def test_a_file_anchor_from_an_older_loopgate_is_carried_over(ledger_ws: Any) -> None:
    home = ledger_ws.store.home
    n = len(rows(ledger_ws))
    # the old anchor was ahead: two entries were cut after the older Loopgate wrote it
    (home / "ledger.head").write_text(json.dumps({"seq": n + 2, "hash": "f" * 64}))
    reopened = Store(home)
    rep = reopened.verify_ledger()
    assert not rep.ok and "deleted from the end" in rep.problem and rep.first_bad_seq == n + 1
    assert not (home / "ledger.head").exists() and (home / "ledger.head.migrated").exists()
    reopened.close()


def test_a_file_anchor_left_behind_by_a_crash_is_not_tampering(ledger_ws: Any) -> None:
    home = ledger_ws.store.home
    r = rows(ledger_ws)
    (home / "ledger.head").write_text(json.dumps({"seq": 3, "hash": r[2][7]}))  # the writer died before moving it
    reopened = Store(home)
    assert reopened.verify_ledger().ok and reopened.verify_ledger().entries == len(r)
    reopened.close()


# ------------------------------------------------------------------ signed entries

KEY = "team-secret-1"


@pytest.fixture
def signed_ws(workspace: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A workspace whose every entry is signed (the key is set before the workspace's first write)."""
    monkeypatch.setenv("LOOPGATE_LEDGER_KEY", KEY)
    store = Store(workspace.store.home)  # opened with the key
    # the workspace's own init entries were written without the key: start a fresh, fully signed registry
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM ledger"))
        conn.execute(text("UPDATE ledger_head SET seq = 0, hash = :g, signature = NULL"), {"g": GENESIS})
    for i in range(4):
        store.record("note", "base", {"i": i}, actor="ana")
    workspace.store.close()
    workspace.store = store
    return workspace


def _rechain_from(ws: Any, seq: int, actor: str) -> None:
    """What a database writer without the key can do: edit an entry and re-hash it and everything after it,
    head included, so the chain and the head agree again."""
    all_rows = rows(ws)
    prev = all_rows[seq - 2][7] if seq > 1 else GENESIS
    with db(ws) as c:
        for s_, ts, a, kind, subject, payload, _, _ in all_rows[seq - 1:]:
            a = actor if s_ == seq else a
            h = entry_hash(s_, ts, a, kind, subject, payload, prev)
            c.execute("UPDATE ledger SET actor = ?, prev_hash = ?, hash = ? WHERE seq = ?", (a, prev, h, s_))
            prev = h
        c.execute("UPDATE ledger_head SET hash = ?", (prev,))


def test_signed_ledger_verifies(signed_ws: Any, cli: Callable[..., Any]) -> None:
    from loopgate.store import ledger as ledger_mod

    with signed_ws.store._tx() as s:  # an append from another store module, naming no key, is signed too
        ledger_mod.append(s, actor="gw", kind="gateway.key", subject="helpdesk", payload={})
    rep = signed_ws.store.verify_ledger()
    assert rep.ok and rep.signed and rep.entries == 5
    res = cli("audit", "verify", "--json", workspace=signed_ws.root)
    assert res.code == 0 and res.json()["signed"] is True
    with db(signed_ws) as c:
        assert all(sig and len(sig) == 64 for (sig,) in c.execute("SELECT signature FROM ledger").fetchall())


def test_rechained_history_is_caught_by_the_signatures(signed_ws: Any, cli: Callable[..., Any]) -> None:
    _rechain_from(signed_ws, 2, "mallory")
    with pytest.MonkeyPatch.context() as mp:  # without the key, the rewrite is consistent: nothing to see
        mp.delenv("LOOPGATE_LEDGER_KEY")
        keyless = Store(signed_ws.store.home)
        assert keyless.verify_ledger().ok
        keyless.close()
    assert_detected(signed_ws, cli, 2, "bad signature")


def test_entries_written_without_the_key_are_reported_unsigned(signed_ws: Any, cli: Callable[..., Any]) -> None:
    with pytest.MonkeyPatch.context() as mp:  # a client (or a script) that does not hold the key
        mp.delenv("LOOPGATE_LEDGER_KEY")
        keyless = Store(signed_ws.store.home)
        keyless.record("note", "base", {"by": "a client without the key"}, actor="bo")
        keyless.close()
    assert_detected(signed_ws, cli, 5, "is unsigned")


def test_the_wrong_key_fails_verification(signed_ws: Any, monkeypatch: pytest.MonkeyPatch,
                                          cli: Callable[..., Any]) -> None:
    monkeypatch.setenv("LOOPGATE_LEDGER_KEY", "not-the-team-key")  # for the CLI, which opens its own store
    signed_ws.store.close()
    signed_ws.store = Store(signed_ws.store.home)
    assert_detected(signed_ws, cli, 1, "bad signature")


def test_a_head_moved_without_the_key_is_detected(signed_ws: Any, cli: Callable[..., Any]) -> None:
    n = len(rows(signed_ws))
    with db(signed_ws) as c:  # cut the last entry and move the head back to match
        c.execute("DELETE FROM ledger WHERE seq = ?", (n,))
        c.execute("UPDATE ledger_head SET seq = ?, hash = ?", (n - 1, rows(signed_ws)[n - 2][7]))
    assert_detected(signed_ws, cli, n - 1, "not signed with the key")


def signatures(ws: Any) -> list[str | None]:
    with db(ws) as c:
        return [sig for (sig,) in c.execute("SELECT signature FROM ledger ORDER BY seq").fetchall()]


def test_a_key_set_late_is_adopted_by_audit_sign(ledger_ws: Any, monkeypatch: pytest.MonkeyPatch,
                                                   cli: Callable[..., Any]) -> None:
    """A registry written before LOOPGATE_LEDGER_KEY was set fails verification once the key is set (every old
    entry is unsigned); `loopgate audit sign` signs them, records who vouched, and verification passes."""
    n = len(rows(ledger_ws))
    assert cli("audit", "sign", workspace=ledger_ws.root).code == 2  # no key: nothing to sign with
    monkeypatch.setenv("LOOPGATE_LEDGER_KEY", KEY)
    ledger_ws.store.close()
    ledger_ws.store = Store(ledger_ws.store.home)  # the team's clients, opened with the key
    assert_detected(ledger_ws, cli, 1, "is unsigned")
    res = cli("audit", "sign", "--json", "--as", "ops", workspace=ledger_ws.root)
    assert res.code == 0 and res.json() == {"signed": n, "entries": n}, res.err
    assert cli("audit", "verify", "--json", workspace=ledger_ws.root).json()["signed"] is True
    last = cli("audit", "log", "--json", "--limit", "1", workspace=ledger_ws.root).json()[0]
    assert (last["kind"], last["actor"], last["payload"]) == ("ledger.sign", "ops", {"signed": n, "entries": n})
    again = cli("audit", "sign", "--json", workspace=ledger_ws.root)  # nothing left unsigned
    assert again.code == 0 and again.json() == {"signed": 0, "entries": n + 1}


def test_audit_sign_refuses_a_chain_that_does_not_verify(ledger_ws: Any, monkeypatch: pytest.MonkeyPatch,
                                                         cli: Callable[..., Any]) -> None:
    with db(ledger_ws) as c:
        c.execute("UPDATE ledger SET actor = ? WHERE seq = ?", ("mallory", 3))
    monkeypatch.setenv("LOOPGATE_LEDGER_KEY", KEY)
    res = cli("audit", "sign", workspace=ledger_ws.root)
    assert res.code == 2 and "does not verify" in res.err and "first bad entry: 3" in res.err
    assert set(signatures(ledger_ws)) == {None}  # nothing was signed


def test_audit_sign_refuses_another_keys_signature(ledger_ws: Any, monkeypatch: pytest.MonkeyPatch,
                                                   cli: Callable[..., Any]) -> None:
    monkeypatch.setenv("LOOPGATE_LEDGER_KEY", "an-older-key")
    assert cli("audit", "sign", workspace=ledger_ws.root).code == 0
    ledger_ws.store.record("note", "base", {"by": "a client without the key"}, actor="bo")  # opened keyless
    monkeypatch.setenv("LOOPGATE_LEDGER_KEY", KEY)
    res = cli("audit", "sign", workspace=ledger_ws.root)
    assert res.code == 2 and "entry 1 " in res.err and "signed with another key" in res.err
    assert signatures(ledger_ws)[-1] is None  # the keyless entry stayed unsigned: the transaction rolled back


def test_a_head_kept_outside_catches_entries_cut_from_the_end(ledger_ws: Any, cli: Callable[..., Any]) -> None:
    """Deleting the newest entries and putting the head row back as it was before them leaves a consistent
    ledger (nothing inside the database can tell); a head hash kept outside (CI logs) still catches it."""
    before = rows(ledger_ws)
    earlier = cli("audit", "verify", "--json", workspace=ledger_ws.root).json()["head_hash"]
    ledger_ws.store.record("note", "base", {"i": 1}, actor="ana")
    ledger_ws.store.record("note", "base", {"i": 2}, actor="ana")
    kept = cli("audit", "verify", "--json", workspace=ledger_ws.root).json()["head_hash"]  # CI keeps this one
    ok = cli("audit", "verify", "--json", "--expect-head", earlier, workspace=ledger_ws.root)
    assert ok.code == 0 and ok.json()["ok"] is True  # an older head is still in the chain
    with db(ledger_ws) as c:  # cut the two newest entries and put the head back where it was
        c.execute("DELETE FROM ledger WHERE seq > ?", (len(before),))
        c.execute("UPDATE ledger_head SET seq = ?, hash = ?", (len(before), earlier))
    assert cli("audit", "verify", "--json", workspace=ledger_ws.root).json()["ok"] is True  # consistent inside
    cut = cli("audit", "verify", "--expect-head", kept, workspace=ledger_ws.root)
    assert cut.code == 1 and "no longer holds the head" in cut.err, cut.err
    bad = cli("audit", "verify", "--expect-head", "nonsense", workspace=ledger_ws.root)
    assert bad.code == 2 and "64 hex digits" in bad.err
