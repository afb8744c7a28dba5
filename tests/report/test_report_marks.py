"""Reports mark rollbacks and transfer strategies (#24 item 9), on a real world (tests/pin_world.py): base@2
ships, the wave re-derives support@2 and billing@2 by diff-vector transfer through the real gates, then support
is rolled back (billing cascades with it)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pin_world import pin_world_copy

from loopgate import loop
from loopgate.loop.pins import pin, unpin
from loopgate.loop.workspace import Workspace
from loopgate.report.build import build_report
from loopgate.report.card import model_card
from loopgate.report.content import release_notes
from loopgate.report.marks import rollback_marks
from loopgate.report.state import line_states, version_state
from loopgate.store import ChannelMove

REASON = "latency regression in support@2"


@pytest.fixture(scope="module")
def rolled(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    ws = Workspace.open(pin_world_copy(tiny_model_dir, tmp_path_factory.getbasetemp(),
                                       tmp_path_factory.mktemp("marks") / "ws"))
    out = loop.release(ws, "base@2", actor="bob")
    assert [(o.line, o.version, o.strategy) for o in out.propagation] == [
        ("support", "support@2", "diff_vector"), ("billing", "billing@2", "diff_vector")]
    back = loop.rollback(ws, "support", reason=REASON, actor="rita")
    assert back.to_version == "support@1" and [c.line for c in back.cascade] == ["billing"]
    yield ws
    ws.store.close()


def test_a_transferred_version_that_was_rolled_back_says_both(rolled: Workspace, tmp_path: Path) -> None:
    notes = release_notes(rolled, "support@2")
    t = notes.transfer
    assert t is not None and t.strategy == "diff_vector"
    assert (t.built_from, t.old_parent, t.new_parent) == ("support@1", "base@1", "base@2")
    assert [(a.strategy, a.accepted) for a in t.attempts] == [("diff_vector", True)]
    [mark] = notes.rollbacks
    assert (mark.direction, mark.channels, mark.to_version, mark.actor, mark.reason) == (
        "rolled_back", ["production"], "support@1", "rita", REASON)

    paths = build_report(rolled, "support@2", tmp_path)
    md = paths.markdown.read_text()
    assert "**Rolled back** on " in md and "by rita: production moved from support@2 to **support@1**" in md
    assert "**Built by capability transfer**, strategy `diff_vector`: support@1 (on base@1) re-derived on base@2" in md
    html = paths.html.read_text()
    assert 'id="rolled-back-1"' in html and "to <b>support@1</b>" in html
    assert 'id="transfer"' in html and "<code>diff_vector</code> accepted" in html
    card = paths.model_card.read_text()
    assert "built by capability transfer, strategy `diff_vector`, from support@1 (on base@1) onto base@2" in card
    assert "rolled back on " in card and "production support@2 → support@1" in card


def test_the_cascade_and_the_restored_version_are_marked_and_others_are_not(rolled: Workspace) -> None:
    billing = release_notes(rolled, "billing@2")
    assert billing.transfer is not None and billing.transfer.built_from == "billing@1"
    assert [(m.direction, m.to_version, m.actor, m.reason) for m in billing.rollbacks] == [
        ("rolled_back", "billing@1", "rita", REASON)]
    restored = release_notes(rolled, "support@1")
    assert restored.transfer is None  # registered, not built by propagation
    assert [(m.direction, m.from_version, m.actor) for m in restored.rollbacks] == [("restored", "support@2", "rita")]
    base = release_notes(rolled, "base@2")
    assert base.rollbacks == [] and base.transfer is None


def test_a_pinned_lines_model_card_and_state_say_who_pinned_it(rolled: Workspace) -> None:
    pin(rolled, "support", reason="keep support@1 until the latency fix", actor="alice")
    try:
        limits = " ".join(model_card(rolled, release_notes(rolled, "support@1")).limitations)
        assert "pinned since" in limits and "by alice" in limits and "loopgate unpin support" in limits
        # the dashboard's state (report/state.py) reads the stored pin too
        assert "by alice" in version_state(rolled.store, "support@1").pinned
        states = line_states(rolled.store, ["support", "billing"])
        assert "by alice" in states["support"].pinned and "by alice" not in states["billing"].pinned
    finally:
        unpin(rolled, "support", actor="alice")  # the module's world is shared


def test_one_rollback_of_production_and_canary_is_one_mark() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)

    def move(i: int, channel: str, actor: str = "rita") -> ChannelMove:
        return ChannelMove(id=i, line="support", channel=channel, from_version="support@3", to_version="support@2",
                           kind="rollback", reason="r", actor=actor, decision_id=None, created_at=at)

    release = move(1, "production").model_copy(update={"kind": "release"})
    marks = rollback_marks([release, move(2, "production"), move(3, "canary"), move(7, "canary", "ann")], "support@3")
    assert [(m.channels, m.actor) for m in marks] == [(["production", "canary"], "rita"), (["canary"], "ann")]
