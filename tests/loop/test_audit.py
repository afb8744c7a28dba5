"""loop/audit.py: verify the ledger, read its tail, collect garbage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from small_world import with_base

from loopgate.loop.audit import collect_garbage, ledger_tail, verify


def test_a_fresh_registry_verifies_and_its_tail_names_the_registration(workspace: Any, tiny_model_dir: Path) -> None:
    v = with_base(workspace, tiny_model_dir)
    report = verify(workspace, artifacts=True)
    assert report.ok, report
    tail = ledger_tail(workspace, limit=5)
    assert 1 <= len(tail) <= 5 and any(e.subject == v for e in tail)


def test_a_dry_run_collects_nothing(workspace: Any, tiny_model_dir: Path) -> None:
    with_base(workspace, tiny_model_dir)
    with_base(workspace, tiny_model_dir)
    before = len(workspace.store.ledger())
    out = collect_garbage(workspace, keep_latest=0, dry_run=True, actor="ops")
    assert out.dry_run
    assert len(workspace.store.ledger()) == before
    assert verify(workspace, artifacts=True).ok
