"""Scale: the read paths run a fixed number of SQL statements per command, not one per line, and a read-only
command does not import the model libraries.

Two ecosystems of the same shape, 50 and 500 lines, are registered through the real registry code (the spec
sync of ``Workspace.init``, ``Store.add_version`` with one tiny shared file, one batched ``move_channels``);
then status, plan, versions, lineage and channels are run on each while SQLAlchemy's ``before_cursor_execute``
event counts the statements. ``bench/scale.py`` measures the wall time on 1k-100k lines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from decided import release
from sqlalchemy import event
from sqlalchemy.engine import Engine

from loopgate.loop.planning import plan
from loopgate.loop.versions import channel_report, ecosystem_status, line_versions, version_lineage
from loopgate.loop.workspace import Workspace


def _spec(n_apps: int) -> str:
    """1 foundation, 5 industrial lines, ``n_apps`` application lines and as many apps (2 + 2·n_apps + 4)."""
    out = ["name: scale", "lines:", "  base: {tier: foundation}"]
    out += [f"  i{k}: {{tier: industrial, parent: base}}" for k in range(5)]
    out += [f"  a{k}: {{tier: application, parent: i{k % 5}}}" for k in range(n_apps)]
    out += [f"  p{k}: {{tier: app, parent: a{k}, app: {{channel: production}}}}" for k in range(n_apps)]
    return "\n".join(out) + "\n"


def _ecosystem(root: Path, n_apps: int) -> Workspace:
    """The spec synced by ``Workspace.init``; base, a0 and a1 get 2 versions, other model lines 1, each built on
    its parent's production version; production points at each line's latest version."""
    ws, _ = Workspace.init(root, _spec(n_apps))
    weights = root / "w.safetensors"
    weights.write_bytes(b"\0" * 64)
    prod: dict[str, str] = {}
    for name, spec in ws.eco.lines.items():
        if spec.tier.value == "app":
            continue
        for _ in range(2 if name in ("base", "a0", "a1") else 1):
            v = ws.store.add_version(name, {"model.safetensors": weights},
                                     parent_version=prod[spec.parent] if spec.parent else None)
        prod[name] = v.id
    release(ws.store, [(line, "production", vid) for line, vid in prod.items()], kind="release",
                           reason="test", actor="test")
    return ws


@contextmanager
def _statements() -> Iterator[list[str]]:
    """Every SQL statement any engine runs meanwhile (a workspace opened inside has an engine of its own)."""
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", count)


READS: dict[str, Callable[[Workspace], object]] = {
    "open": lambda ws: Workspace.open(ws.root),  # the spec sync every command runs
    "status": ecosystem_status,
    "plan": lambda ws: plan(ws, "base@2"),
    "versions": lambda ws: line_versions(ws, "a0"),
    "lineage": lambda ws: version_lineage(ws, "base@1"),
    "channels": lambda ws: channel_report(ws, "a0"),
}


def _counts(ws: Workspace) -> dict[str, int]:
    out = {}
    for name, read in READS.items():
        with _statements() as seen:
            read(ws)
        out[name] = len(seen)
    return out


@pytest.fixture(scope="module")
def ecosystems(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Workspace]:
    return {n: _ecosystem(tmp_path_factory.mktemp(f"eco{n}"), n) for n in (22, 247)}


def test_reads_run_a_fixed_number_of_statements(ecosystems: dict[int, Workspace]) -> None:
    small, large = ecosystems[22], ecosystems[247]
    assert len(small.eco.lines) == 50 and len(large.eco.lines) == 500
    few, many = _counts(small), _counts(large)
    assert few == many, f"statements grow with the number of lines: 50 lines {few}, 500 lines {many}"
    assert max(many.values()) <= 12, many
    # and the bulk reads give the right answers
    rows = {r.line: r for r in ecosystem_status(large)}
    assert len(rows) == 500 and rows["a0"].latest == "a0@2" and rows["p3"].channels["production"] == "a3@1"
    assert rows["i2"].channels == {"staging": None, "canary": None, "production": "i2@1"}
    assert not any(r.pinned for r in rows.values())
    wave = plan(large, "base@2")
    assert len(wave) == 499 and [w.tier for w in wave[:5]] == ["industrial"] * 5 and wave[-1].tier == "app"
    assert wave[5].current == "a0@2" and wave[5].built_on == "i0@1"
    lin = version_lineage(large, "i0@1")
    assert [a.version for a in lin.ancestors] == ["base@2"]
    assert {d.version for d in lin.descendants} == {f"a{k}@{2 if k in (0,) else 1}" for k in range(0, 247, 5)} | {
        "a0@1"}


def test_gate_context_reads_do_not_grow_with_lines(ecosystems: dict[int, Workspace]) -> None:
    """A release decision's reads (baselines, the foundation reference, approvals, decisions) on a candidate of
    an application line: the same statements on 50 and 500 lines (gates that need no weights)."""
    from loopgate.loop import gating

    counts = []
    for ws in (ecosystems[22], ecosystems[247]):
        with _statements() as seen:
            baselines = gating.version_baselines(ws, "a0@2")
            decision = gating.decide_candidate(ws, line="a0", candidate="a0@2", candidate_dir=ws.root,
                                               candidate_evals={}, baselines=baselines, requester="test",
                                               gates=["regression", "inheritance", "approval"])
        # a0@1 never held production (the world points production at each line's latest version): a version
        # that never shipped is never a baseline (#26)
        assert baselines == {"production": None, "previous": None, "parent": "i0@1"}
        assert [g.name for g in decision.gates] == ["regression", "inheritance", "approval"]
        counts.append(len(seen))
    # (+2 since #26: the versions production held, read once, and the candidate's number)
    assert counts[0] == counts[1] and counts[1] <= 14, counts


def test_open_writes_only_lines_the_spec_changed(tmp_path: Path) -> None:
    ws = _ecosystem(tmp_path / "eco", 5)
    before = len(ws.store.ledger())
    Workspace.open(ws.root)
    assert len(ws.store.ledger()) == before  # nothing new: no write, no ledger entry
    (ws.root / "loopgate.yaml").write_text(_spec(6), encoding="utf-8")
    reopened = Workspace.open(ws.root)
    added = [e.subject for e in reopened.store.ledger()[before:]]
    assert added == ["a5", "p5"]


def test_status_imports_no_model_library(tmp_path: Path) -> None:
    ws = _ecosystem(tmp_path / "eco", 3)
    probe = (
        "import sys, io, contextlib\n"
        "from loopgate.cli import main\n"
        "for argv in (['status'], ['versions', 'a0'], ['channels', 'a0'], ['plan', 'base@2'], "
        "['lineage', 'base@1'], ['audit', 'verify'], ['init']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            main([*argv, '--json', '--workspace', sys.argv[1]])\n"
        "        except SystemExit as e:\n"
        "            assert not e.code, (argv, e.code)\n"
        "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", probe, str(ws.root)], capture_output=True, text=True, env=env,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout.strip().splitlines()[-1].replace("'", '"')) == []
