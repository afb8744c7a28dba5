"""``loopgate pin`` / ``unpin`` (#24 item 7): a stored pin, written with its ledger entry, replayed by audit
verify, refused to a viewer, shown by status and plan — and a pinned line really stays on its parent version
through a wave, then follows the next one once unpinned (real transfers and gates, tests/pin_world.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pin_world import pin_world_copy
from sqlalchemy import text

from loopgate import loop
from loopgate.errors import LoopgateError
from loopgate.loop.pins import pin, unpin
from loopgate.loop.rules import RoleError
from loopgate.loop.workspace import Workspace
from loopgate.store.pins import line_pins


def _entries(ws: Workspace, kind: str) -> list[Any]:
    return [e for e in ws.store.ledger() if e.kind == kind]


def _status(ws: Workspace) -> dict[str, Any]:
    return {r.line: r for r in loop.ecosystem_status(ws)}


@pytest.mark.parametrize("database", ["sqlite", "postgresql"], indirect=True)
def test_pin_and_unpin_are_recorded_with_their_actor_and_replayed(workspace: Workspace) -> None:
    first = pin(workspace, "support", reason="legal review of base@2", actor="Alice")
    assert first.changed and first.pinned and first.pin is not None and first.pin.actor == "alice"
    # a second pin keeps the first one (who, when, why) and records nothing
    again = pin(workspace, "support", reason="another reason", actor="carol")
    assert not again.changed and again.pin == first.pin and "already pinned" in again.message
    [entry] = _entries(workspace, "line.pin")
    assert (entry.actor, entry.subject, entry.payload["reason"]) == ("alice", "support", "legal review of base@2")
    row = _status(workspace)["support"]
    assert row.pinned and "by alice" in row.note and "(unpin with `loopgate unpin support`)" in row.note
    assert not _status(workspace)["billing"].pinned
    assert workspace.store.verify_state() == []

    done = unpin(workspace, "support", actor="dave", reason="review done")
    assert done.changed and not done.pinned and line_pins(workspace.store) == {}
    [gone] = _entries(workspace, "line.unpin")
    assert (gone.actor, gone.payload["pinned_by"], gone.payload["reason"]) == ("dave", "alice", "review done")
    assert not unpin(workspace, "support", actor="dave").changed and len(_entries(workspace, "line.unpin")) == 1
    assert not _status(workspace)["support"].pinned and workspace.store.verify_state() == []


@pytest.mark.parametrize("database", ["sqlite", "postgresql"], indirect=True)
def test_audit_verify_names_pins_written_or_removed_beside_the_ledger(workspace: Workspace) -> None:
    pin(workspace, "support", reason="hold", actor="alice")
    with workspace.store.engine.begin() as conn:
        conn.execute(text("INSERT INTO line_pins (line, actor, reason, production, created_at) "
                          "VALUES ('billing', 'mallory', 'x', NULL, CURRENT_TIMESTAMP)"))
        conn.execute(text("DELETE FROM line_pins WHERE line = 'support'"))
    problems = "\n".join(workspace.store.verify_state())
    assert "line billing is pinned (by mallory)" in problems and "pinned outside Loopgate" in problems
    assert "line support was pinned by alice" in problems and "unpinned outside Loopgate" in problems


def test_only_a_releaser_or_an_admin_may_pin_and_a_pin_needs_a_reason(workspace: Workspace) -> None:
    for call in (lambda: pin(workspace, "support", reason="hold", actor="vic", role="viewer"),
                 lambda: unpin(workspace, "support", actor="vic", role="viewer"),
                 lambda: pin(workspace, "support", reason="hold", actor="ann", role="approver")):
        with pytest.raises(RoleError, match="only a releaser or an admin"):
            call()
    with pytest.raises(LoopgateError, match="needs a reason"):
        pin(workspace, "support", reason="   ", actor="rita", role="releaser")
    assert _entries(workspace, "line.pin") == [] and line_pins(workspace.store) == {}
    assert pin(workspace, "support", reason="hold", actor="rita", role="releaser").changed
    assert unpin(workspace, "support", actor="rita", role="releaser").changed


def test_cli_pin_unpin_json_and_clear_errors(workspace: Workspace, cli: Any) -> None:
    root = workspace.root
    for args, says in ((("pin", "nosuch", "--reason", "x"), "unknown line 'nosuch'"),
                       (("pin", "base", "--reason", "x"), "foundation line"),
                       (("pin", "helpdesk", "--reason", "x"), "pin the model line 'support'"),
                       (("pin", "support", "--reason", " "), "needs a reason"),
                       (("unpin", "nosuch"), "unknown line 'nosuch'")):
        res = cli(*args, workspace=root)
        assert res.code == 2 and says in " ".join(res.err.split()), (args, res.err)
        assert "Traceback" not in res.err
    assert cli("pin", "support", workspace=root).code == 2  # --reason is required
    made = cli("pin", "support", "--reason", "[red]wait[/] for base@2's review", "--as", "alice", "--json",
               workspace=root)
    assert made.code == 0 and made.json()["changed"] and made.json()["pin"]["actor"] == "alice"
    twice = cli("pin", "support", "--reason", "again", workspace=root)
    assert twice.code == 0 and "already pinned" in twice.out and "[red]wait[/]" in twice.out  # markup printed
    shown = {r["line"]: r for r in cli("status", "--json", workspace=root).json()["lines"]}["support"]
    assert shown["pinned"] and "pinned since" in shown["note"] and "loopgate unpin support" in shown["note"]
    gone = cli("unpin", "support", "--as", "bob", "--json", workspace=root)
    assert gone.code == 0 and gone.json()["changed"] and not gone.json()["pinned"]
    assert cli("unpin", "support", workspace=root).out.strip() == "support is not pinned; nothing changed"


def test_a_pinned_line_stays_through_the_wave_and_follows_the_next_one_once_unpinned(
        tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    ws = Workspace.open(pin_world_copy(tiny_model_dir, tmp_path_factory.getbasetemp(), tmp_path / "ws"))
    pin(ws, "support", reason="keep base@1 until the audit", actor="alice")
    planned = {s.line: s for s in loop.plan(ws, "base@2")}
    assert "pinned since" in planned["support"].action and planned["support"].strategies == []
    assert planned["billing"].action == "stays: its parent line support is pinned"

    out = loop.release(ws, "base@2", actor="bob")
    assert out.released and ws.store.channel("base") == "base@2"
    [held] = out.propagation  # the wave stops at the pinned line: billing below it is not touched
    assert held.line == "support" and held.pinned and not held.released and held.version is None
    assert "by alice" in held.note and "stays on base@1" in held.note and "loopgate unpin support" in held.note
    assert [v.id for v in ws.store.versions("support")] == ["support@1"]
    assert ws.store.channel("support") == "support@1" and ws.store.channel("billing") == "billing@1"

    unpin(ws, "support", actor="alice", reason="audit passed")
    assert loop.plan(ws, "base@2")[0].strategies == ["diff_vector"]
    wave = {o.line: o for o in loop.propagate_from(ws, "base@2", actor="bob")}
    assert wave["support"].released and wave["support"].strategy == "diff_vector"
    assert wave["billing"].released and wave["billing"].from_parent == "support@1"
    assert ws.store.channel("support") == "support@2" and ws.store.version("support@2").parent_version == "base@2"
    assert ws.store.version(str(ws.store.channel("billing"))).parent_version == "support@2"
    assert ws.store.verify_state() == []
    ws.store.close()
