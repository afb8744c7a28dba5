"""Concurrent writers on one registry, in separate processes, on SQLite and on PostgreSQL: every write lands
in the ledger exactly once with database-assigned sequence numbers; of two moves of the same channel decided
on the same state exactly one wins and the other changes nothing; a writer killed inside its transaction
leaves the registry as it was."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import writer
from decided import release

from loopgate.errors import ConflictError
from loopgate.store import Store

FORK = multiprocessing.get_context("fork")  # real processes, without paying the interpreter start 8 times
WRITERS, WRITES = 8, 50


def _child(args: tuple[str, ...], env: dict[str, str]) -> None:
    os.environ.update(env)
    try:
        code = writer.main(*args)
    except BaseException:  # noqa: BLE001 - the parent reads the traceback from the err file
        Path(args[1], f"err-{args[2]}").write_text(traceback.format_exc())
        code = 1
    os._exit(code)


def run_together(home: Path, jobs: list[tuple[str, str, str]], env: dict[str, str] | None = None,
                 while_running: Callable[[], None] | None = None) -> list[tuple[int, str, str]]:
    """Fork one process per (mode, writer, arg), wait until each has opened the store and read what it
    needs, then let all of them write at once; (exit code, what it wrote to out-ID, err-ID) of each."""
    go = home / "go"
    procs = [FORK.Process(target=_child, args=((mode, str(home), w, arg, str(go)), env or {}))
             for mode, w, arg in jobs]
    for p in procs:
        p.start()
    deadline = time.monotonic() + 120
    while not all((home / f"ready-{w}").exists() for _, w, _ in jobs):
        assert time.monotonic() < deadline and all(p.exitcode is None for p in procs), \
            [(home / f"err-{w}").read_text() for _, w, _ in jobs if (home / f"err-{w}").exists()]
        time.sleep(0.02)
    go.touch()
    while while_running is not None and any(p.is_alive() for p in procs):
        while_running()
    results = []
    for p, (_, w, _) in zip(procs, jobs, strict=True):
        p.join(timeout=300)
        out, err = home / f"out-{w}", home / f"err-{w}"
        results.append((p.exitcode if p.exitcode is not None else -999, out.read_text() if out.exists() else "",
                        err.read_text() if err.exists() else ""))
    return results


def register(store: Store, tmp: Path, n: int) -> list[str]:
    src = tmp / "src"
    src.mkdir(exist_ok=True)
    ids = []
    for i in range(n):
        (src / "model.safetensors").write_bytes(f"base weights {i}".encode())
        ids.append(store.add_version("base", {"model.safetensors": src / "model.safetensors"}, actor="ana").id)
    return ids


def test_eight_writers_fifty_writes_each_land_once(workspace: Any, cli: Callable[..., Any]) -> None:
    home = workspace.store.home
    before = len(workspace.store.ledger())
    audits: list[int] = []

    def audit_while_they_write() -> None:  # on one snapshot: a commit landing mid-walk is never "tampering"
        rep = workspace.store.verify_ledger()
        assert rep.ok, rep.problem
        audits.append(rep.entries)

    results = run_together(home, [("writes", str(w), str(WRITES)) for w in range(WRITERS)],
                           while_running=audit_while_they_write)
    assert [code for code, _, _ in results] == [0] * WRITERS, [err[-2000:] for _, _, err in results]
    assert audits and audits == sorted(audits)  # audited mid-way, each time a consistent, growing ledger

    ledger = workspace.store.ledger()
    assert [e.seq for e in ledger] == list(range(1, len(ledger) + 1))
    assert len(ledger) == before + WRITERS * WRITES
    by_writer = Counter(e.actor for e in ledger[before:])
    assert by_writer == {f"w{w}": WRITES for w in range(WRITERS)}
    notes = Counter((e.payload["writer"], e.payload["i"]) for e in ledger if e.kind == "note")
    expected_notes = {(str(w), i) for w in range(WRITERS) for i in range(WRITES) if i % 5 not in (0, 1, 2)}
    assert set(notes) == expected_notes and set(notes.values()) == {1}
    # version numbers come from the database under the writers' lock: 1..80, no gap, no clash
    versions = workspace.store.versions("base")
    assert [v.number for v in versions] == list(range(1, WRITERS * WRITES // 5 + 1))
    assert Counter(v.created_by for v in versions) == {f"w{w}": WRITES // 5 for w in range(WRITERS)}
    # every staging move saw the move before it: the history is one unbroken chain
    history = workspace.store.channel_history("base", "staging")
    assert len(history) == WRITERS * WRITES // 5
    assert all(a.to_version == b.from_version for a, b in zip(history, history[1:], strict=False))
    assert workspace.store.verify_ledger().ok
    res = cli("audit", "verify", "--json", workspace=workspace.root)
    assert res.code == 0 and res.json()["ok"] is True and res.json()["entries"] == len(ledger)


def test_of_four_releases_and_rollbacks_decided_on_one_state_exactly_one_wins(workspace: Any, tmp_path: Path) -> None:
    store = workspace.store
    v1, v2, v3 = register(store, tmp_path, 3)
    for v in (v1, v2, v3):  # production held each: each is a rollback target (the release rule)
        release(store, [("base", "production", v)], kind="release", reason="r", actor="ana")
    before = len(store.ledger())
    targets = [v1, v2, v1, v2]
    kinds = ["rollback", "release", "release", "rollback"]  # two rollbacks and two releases of one line
    jobs = [("move", str(w), f"{t}:{k}") for w, (t, k) in enumerate(zip(targets, kinds, strict=True))]
    results = run_together(store.home, jobs)
    winners = [w for w, (code, out, _) in enumerate(results) if code == 0 and out.strip() == "moved"]
    losers = [(code, out) for code, out, _ in results if code != 0]
    assert len(winners) == 1, results
    assert len(losers) == 3 and all(code == 2 for code, _ in losers), results
    for _, out in losers:
        assert out.startswith("conflict: base/production changed while this command ran") and "Nothing was moved" in out
        assert f"pointed at {v3} when the command read it and points at {targets[winners[0]]} now" in out
    assert store.channel("base", "production") == targets[winners[0]]
    history = store.channel_history("base", "production")
    assert [(m.from_version, m.to_version, m.kind) for m in history[3:]] == [
        (v3, targets[winners[0]], kinds[winners[0]])]  # one move after the three set-up releases
    # one move, and the passing decision each of the two releasing writers recorded before the race
    assert len(store.ledger()) == before + 1 + kinds.count("release") and store.verify_ledger().ok


def test_a_rollback_that_loses_the_race_changes_nothing(workspace: Any, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       cli: Callable[..., Any]) -> None:
    """The service layer's rollback decides on what it read; a colleague's rollback that commits between
    that read and its write wins, and this one fails with a ConflictError and moves nothing."""
    from loopgate.loop.channels import rollback

    store = workspace.store
    v1, v2, v3 = register(store, tmp_path, 3)
    for v in (v1, v2, v3):
        release(store, [("base", "production", v)], kind="release", reason="r", actor="ana")
    colleague = Store(store.home)  # another client: its own engine and connections
    real_verify = store.verify_version

    def colleague_rolls_back_first(version_id: str) -> list[str]:  # runs between rollback's read and write
        colleague.move_channels([("base", "production", v1)], kind="rollback", reason="colleague", actor="bo")
        return real_verify(version_id)

    monkeypatch.setattr(store, "verify_version", colleague_rolls_back_first)
    with pytest.raises(ConflictError, match=f"pointed at {v3} when the command read it and points at {v1} now"):
        rollback(workspace, "base", reason="mine", actor="ana")
    colleague.close()
    assert store.channel("base", "production") == v1
    assert [m.reason for m in store.channel_history("base") if m.kind == "rollback"] == ["colleague"]
    assert store.verify_ledger().ok


def test_a_writer_killed_inside_its_transaction_leaves_the_registry_consistent(
        workspace: Any, tmp_path: Path) -> None:
    """SIGKILL after the writer's rows are flushed (channel row locked and changed, move and ledger entry
    written, head moved) and before its commit, while two other writers queue for the lock it holds."""
    store = workspace.store
    v1, v2 = register(store, tmp_path, 2)
    release(store, [("base", "production", v1)], kind="release", reason="r", actor="ana")
    ledger_before = store.ledger()
    results = run_together(store.home, [("kill", "k", v2), ("writes", "0", "10"), ("writes", "1", "10")])
    assert results[0][0] == -signal.SIGKILL, results[0]
    assert [code for code, _, _ in results[1:]] == [0, 0], [err[-2000:] for _, _, err in results]
    fresh = Store(store.home)  # another client, after the crash
    assert fresh.channel("base", "production") == v1
    assert [m.to_version for m in fresh.channel_history("base", "production")] == [v1]
    ledger = fresh.ledger()
    assert ledger[:len(ledger_before)] == ledger_before
    # nothing of the killed move: only the decision it recorded before the barrier (the move needs one)
    assert Counter(e.actor for e in ledger[len(ledger_before):]) == {"w0": 10, "w1": 10, "decider": 1}
    assert fresh.verify_ledger().ok
    # the dead writer's locks are gone: the next write goes through at once and chains on
    t0 = time.monotonic()
    release(fresh, [("base", "production", v2)], kind="release", reason="after the crash", actor="bo",
                        expected={("base", "production"): v1})
    assert time.monotonic() - t0 < 20
    assert fresh.channel("base", "production") == v2
    rep = fresh.verify_ledger()
    assert rep.ok and rep.entries == len(ledger) + 2  # the release's decision and its move
    fresh.close()
