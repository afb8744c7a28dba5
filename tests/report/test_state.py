"""A version's and a line's state from production's point of view (:mod:`loopgate.report.state`), on a real
registry (SQLite and PostgreSQL) holding each case: in production, canary, rolled back, blocked by a gate,
awaiting approval, superseded, a candidate not decided, a line pinned to an older parent version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from decided import release
from pg import both_databases

from loopgate.records import Decision, GateResult, Verdict
from loopgate.report.state import line_states, version_state
from loopgate.store.release_reads import filtered_ledger_page, has_actor, ledger_actors, ledger_kinds


def _decide(store: Any, version: str, verdict: Verdict, gates: dict[str, tuple[Verdict, bool]]) -> None:
    """Record a decision of ``version`` with the given gates: name → (verdict, blocking)."""
    store.add_decision(Decision(version=version, verdict=verdict, policy_sha256="p" * 64, requester="bob",
                                gates=[GateResult(name=n, verdict=v, blocking=b, summary=f"{n} {v.value}")
                                       for n, (v, b) in gates.items()]))


@pytest.fixture
def story(workspace: Any, tiny_model_dir: Path) -> Any:
    """base → support → billing through releases, a blocked and a held candidate, a rollback and a canary."""
    from loopgate.loop.versions import register_model

    ws, store = workspace, workspace.store

    def add(line: str) -> str:
        return register_model(ws, line, tiny_model_dir).id

    release(store, [("base", "production", add("base"))])  # base@1
    release(store, [("support", "production", add("support"))])  # support@1 on base@1
    add("support")  # support@2: blocked by cost; plasticity failed too, but it only warns
    _decide(store, "support@2", Verdict.failed, {"regression": (Verdict.passed, True), "cost": (Verdict.failed, True),
                                                 "plasticity": (Verdict.failed, False)})
    release(store, [("support", "production", add("support"))])  # support@3 replaces support@1 ...
    release(store, [("billing", "production", add("billing"))])  # billing@1 on support@3
    release(store, [("support", "production", "support@1")], kind="rollback", actor="oncall",
            reason="INC-7")  # ... and is rolled back
    add("support")  # support@4: awaiting approval
    _decide(store, "support@4", Verdict.inconclusive, {"approval": (Verdict.inconclusive, True)})
    release(store, [("base", "production", add("base"))])  # base@2: support now pinned to base@1
    release(store, [("base", "canary", add("base"))])  # base@3 in canary
    add("billing")  # billing@2: never gated
    return ws


@both_databases
def test_each_version_says_where_it_stands(story: Any) -> None:
    got = {v: version_state(story.store, v) for v in ("base@1", "base@2", "base@3", "support@1", "support@2",
                                                       "support@3", "support@4", "billing@1", "billing@2")}
    assert {v: s.kind for v, s in got.items()} == {
        "base@1": "superseded", "base@2": "production", "base@3": "canary", "support@1": "production",
        "support@2": "blocked", "support@3": "rolled back", "support@4": "held", "billing@1": "production",
        "billing@2": "candidate"}
    assert got["support@2"].label == "blocked by cost" and got["support@2"].gates == ["cost"]  # a warning blocks not
    assert got["support@2"].mark == "blocked" and got["base@1"].mark == got["support@1"].mark == "shipped"
    assert got["support@3"].label == "rolled back (production → support@1 by oncall)"
    assert got["support@4"].label == "awaiting approval"
    assert got["base@1"].label == "shipped, superseded by base@2"
    assert got["billing@2"].label == "candidate, not decided"
    assert got["support@1"].pinned == "pinned to base@1 (parent ships base@2)"
    assert got["support@1"].label == "in production, pinned to base@1 (parent ships base@2)"
    assert got["billing@1"].pinned == "pinned to support@3 (parent ships support@1)"


@both_databases
def test_a_line_is_coloured_by_production_and_its_newest_candidate_is_apart(story: Any) -> None:
    lines = line_states(story.store, ["base", "support", "billing"])
    base, support, billing = lines["base"], lines["support"], lines["billing"]
    assert (base.production, base.health, base.pinned) == ("base@2", "healthy", "")
    assert base.candidate is not None and (base.candidate.version, base.candidate.kind) == ("base@3", "canary")
    assert (support.production, support.health) == ("support@1", "rolled back")
    assert support.note == "rolled back from support@3 by oncall: INC-7"
    assert support.pinned == "pinned to base@1 (parent ships base@2)"
    assert support.candidate is not None and support.candidate.kind == "held"
    assert billing.health == "healthy" and billing.candidate is not None
    assert billing.candidate.kind == "candidate"
    # the same answer as the one-version function, for every line's candidate
    for s in lines.values():
        assert s.candidate is not None and s.candidate == version_state(story.store, s.candidate.version)


@both_databases
def test_the_ledger_filters_by_kind_and_actor(story: Any) -> None:
    store = story.store
    kinds = ledger_kinds(store)
    assert {"channel.release", "channel.rollback", "decision", "version.create"} <= set(kinds)
    rollbacks = filtered_ledger_page(store, kind="channel.rollback")
    assert rollbacks.total == 1 and [e.subject for e in rollbacks.entries] == ["support/production"]
    by_oncall = filtered_ledger_page(store, actor="oncall")
    assert by_oncall.total >= 1 and {e.actor for e in by_oncall.entries} == {"oncall"}
    every = [e for e in store.ledger() if e.kind == "decision"]
    page = filtered_ledger_page(store, 1, 2, kind="decision")
    assert page.total == len(every) and [e.seq for e in page.entries] == [e.seq for e in every[::-1][1:3]]
    assert "oncall" in ledger_actors(store) and has_actor(store, "oncall") and not has_actor(store, "nobody")


def test_how_a_version_last_left_production_decides_rolled_back_or_superseded() -> None:
    from datetime import UTC, datetime

    from loopgate.report.state import classify
    from loopgate.store import ChannelMove

    def move(i: int, frm: str | None, to: str, kind: str = "release") -> ChannelMove:
        return ChannelMove(id=i, line="s", channel="production", from_version=frm, to_version=to, kind=kind,
                           reason="", actor="ops", decision_id=None, created_at=datetime.now(UTC))

    history = [move(1, None, "s@1"), move(2, "s@1", "s@2"), move(3, "s@2", "s@1", "rollback")]
    assert classify("s@2", {"production": "s@1"}, history, None).kind == "rolled back"
    history += [move(4, "s@1", "s@2"), move(5, "s@2", "s@3")]  # s@2 shipped again, then replaced by s@3
    state = classify("s@2", {"production": "s@3"}, history, None)
    assert (state.kind, state.label) == ("superseded", "shipped, superseded by s@3")
    assert classify("s@1", {"production": "s@3"}, history, None).label == "shipped, superseded by s@2"


@both_databases
def test_a_pin_someone_made_says_who_and_why_on_the_line_and_its_production(story: Any) -> None:
    from loopgate.store.pins import pin_line

    pin_line(story.store, "billing", actor="eve", reason="waiting for QA")
    said = line_states(story.store, ["billing"])["billing"].pinned
    assert "by eve" in said and "waiting for QA" in said and "loopgate unpin billing" in said
    assert version_state(story.store, "billing@1").pinned == said
