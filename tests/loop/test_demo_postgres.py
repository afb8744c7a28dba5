"""``loopgate demo`` with the registry on PostgreSQL (issue 24): its tamper step copied the registry with
``sqlite3`` and crashed with a traceback ("no such table: ledger") when there was no SQLite file.

The tamper step is checked on both databases in a second; the whole quick demo runs once on a real PostgreSQL
server (``tests/pg.py``) through the console script, as a user runs it, and must tell the whole story.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pg import both_databases

from loopgate.demo.tamper import FORGER, copy_registry, tamper_copy
from loopgate.store import Store

LOOPGATE = shutil.which("loopgate", path=str(Path(sys.executable).parent)) or "loopgate"


@both_databases
def test_the_tamper_step_catches_an_edit_in_a_copy_on_both_databases(workspace: Any, database: str | None,
                                                                      tmp_path: Path) -> None:
    store = workspace.store
    assert (store.engine.dialect.name == "postgresql") == (database is not None)
    for i in range(9):
        store.record("demo.note", f"note/{i}", {"i": i}, actor="demo")
    entries = store.verify_ledger().entries
    assert entries >= 9

    untouched = copy_registry(store, tmp_path / "copy")  # the copy is faithful: it verifies as the source does
    try:
        report = untouched.verify_ledger()
        assert report.ok and report.entries == entries, report
        assert [e.hash for e in untouched.ledger()] == [e.hash for e in store.ledger()]
        assert not untouched.verify_state()
    finally:
        untouched.engine.dispose()

    tampered = tamper_copy(store, tmp_path / "tampered")
    assert tampered["ok"] is False and tampered["first_bad_seq"] == entries // 2, tampered
    assert f"entry {entries // 2}" in tampered["problem"] and "edited" in tampered["problem"]
    assert store.verify_ledger().ok  # the edit was made in the copy only
    assert FORGER not in {e.actor for e in store.ledger()}


@pytest.mark.slow
def test_loopgate_demo_quick_tells_the_whole_story_on_postgresql(postgres_demo: Any) -> None:
    """The quick demo with LOOPGATE_DATABASE_URL set, started in the background when the session began
    (tests/background_demo.py): exit 0, no traceback, every claim of the story holds, the registry is the
    PostgreSQL database and the tampered copy is caught."""
    root, database = postgres_demo.root, postgres_demo.url
    code, stdout, stderr = postgres_demo.wait(timeout=1500)
    proc = subprocess.CompletedProcess(args=[], returncode=code, stdout=stdout, stderr=stderr)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    demo = json.loads(proc.stdout)
    broken = [c for c in demo["story"] if not c["holds"]]
    assert proc.returncode == 0 and demo["story_holds"], broken
    assert len(demo["story"]) == 10
    assert demo["audit_ok"] and not demo["tampered"]["ok"] and demo["tampered"]["first_bad_seq"] >= 1

    assert not (root / ".loopgate" / "registry.db").exists()  # nothing fell back to SQLite
    registry = Store(root / ".loopgate", url=database)
    try:
        assert registry.engine.dialect.name == "postgresql"
        assert registry.verify_ledger().ok
        rollbacks = [e for e in registry.ledger() if e.kind.startswith("channel") and e.subject.startswith("billing")]
        assert rollbacks and FORGER not in {e.actor for e in registry.ledger()}
        assert registry.channel("billing", "production") == demo["rollback"]["to"]
    finally:
        registry.engine.dispose()
