"""The registry: version numbering, immutability, idempotent evaluations, channels and their history,
atomic multi-channel moves, and consistency after a crash inside a write."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from decided import passing, release
from sqlalchemy import func, select

from loopgate.errors import ImmutableError, LoopgateError, MoveRefused, NotFoundError
from loopgate.records import Evaluation, ExampleResult
from loopgate.store import Store, parse_version_id
from loopgate.store import ledger as ledger_mod
from loopgate.store.db import ChannelMoveRow, LedgerRow, VersionFileRow, VersionRow

MakeFiles = Callable[[str], dict[str, Path]]


def test_versions_are_numbered_per_line(store: Store, make_files: MakeFiles) -> None:
    ids = [store.add_version("base", make_files(f"b{i}")).id for i in range(3)]
    ids.append(store.add_version("support", make_files("s1"), parent_version="base@3").id)
    assert ids == ["base@1", "base@2", "base@3", "support@1"]
    assert [v.number for v in store.versions("base")] == [1, 2, 3]
    v = store.version("support@1")
    assert v.parent_version == "base@3" and v.line == "support"
    assert set(v.files) == {"model.safetensors", "config.json"}
    assert store.latest_version("base").id == "base@3"  # type: ignore[union-attr]
    assert store.latest_version("billing") is None


def test_version_ids_parse_strictly(store: Store) -> None:
    assert parse_version_id("support@12") == ("support", 12)
    for bad in ("support", "support@", "support@0", "@1", "support@x"):
        with pytest.raises(LoopgateError, match="version ids read LINE@N"):
            parse_version_id(bad)
    with pytest.raises(NotFoundError, match="no version base@9"):
        store.version("base@9")
    with pytest.raises(NotFoundError, match="unknown line 'nope'"):
        store.versions("nope")


def test_adding_an_existing_version_number_fails(store: Store, make_files: MakeFiles) -> None:
    store.add_version("base", make_files("a"))
    entries = len(store.ledger())
    with pytest.raises(ImmutableError, match="base@1 already exists"):
        store.add_version("base", make_files("b"), number=1)
    v = store.version("base@1")
    assert store.artifacts.path_for(v.files["config.json"]).read_text() == '{"tag": "a"}'
    assert len(store.ledger()) == entries  # the refused write left no record


def test_unknown_line_is_refused(store: Store, make_files: MakeFiles) -> None:
    with pytest.raises(NotFoundError, match="unknown line 'legal'"):
        store.add_version("legal", make_files("x"))


@pytest.mark.parametrize("row_cls", [VersionRow, VersionFileRow, LedgerRow])
def test_orm_refuses_to_update_immutable_rows(store: Store, make_files: MakeFiles, row_cls: type) -> None:
    store.add_version("base", make_files("a"), provenance={"note": "original"})
    with store._sessions() as s, pytest.raises(ImmutableError, match="immutable"):
        with s.begin():
            row = s.execute(select(row_cls).limit(1)).scalar_one()
            if row_cls is VersionRow:
                row.provenance = {"note": "rewritten"}
            elif row_cls is VersionFileRow:
                row.sha256 = "0" * 64
            else:
                row.actor = "mallory"
    assert store.version("base@1").provenance == {"note": "original"}
    assert store.verify_ledger().ok


def _evaluation(version: str, suite_sha: str, score: float) -> Evaluation:
    examples = [ExampleResult(id=str(i), correct=i < score * 4) for i in range(4)]
    return Evaluation(version=version, suite="reversal", suite_sha256=suite_sha, kind="generation", n=4,
                      score=score, examples=examples)


def test_evaluations_are_idempotent_per_version_and_suite_hash(store: Store, make_files: MakeFiles) -> None:
    store.add_version("base", make_files("a"))
    first = store.add_evaluation(_evaluation("base@1", "s" * 64, 0.5))
    again = store.add_evaluation(_evaluation("base@1", "s" * 64, 0.75))
    assert again.score == first.score == 0.5  # the first result stands
    store.add_evaluation(_evaluation("base@1", "t" * 64, 0.25))  # an edited suite is a new suite version
    stored = store.evaluations("base@1")
    assert [e.score for e in stored] == [0.5, 0.25]
    assert [x.correct for x in stored[0].examples] == [True, True, False, False]  # per-example outcomes kept
    assert store.evaluation("base@1", "t" * 64).score == 0.25  # type: ignore[union-attr]
    assert store.evaluation("base@1", "u" * 64) is None
    assert [e.kind for e in store.ledger()].count("evaluation") == 2
    with pytest.raises(NotFoundError):
        store.add_evaluation(_evaluation("base@7", "s" * 64, 1.0))


def test_channels_move_with_full_history(store: Store, make_files: MakeFiles) -> None:
    for i in range(3):
        store.add_version("base", make_files(f"b{i}"))
    ids = passing(store, "base@1", "base@2", "base@3")
    store.move_channels([("base", "production", "base@1")], kind="release", reason="first", actor="ana",
                        decision_id=ids["base@1"])
    store.move_channels([("base", "canary", "base@2"), ("base", "production", "base@2")], kind="release",
                        reason="second", actor="ana", decision_id=ids["base@2"])
    store.move_channels([("base", "production", "base@3")], kind="promote", reason="third", actor="bo",
                        decision_id=ids["base@3"])
    assert store.channels("base") == {"staging": None, "canary": "base@2", "production": "base@3"}
    hist = store.channel_history("base", "production")
    assert [(m.from_version, m.to_version, m.kind, m.actor) for m in hist] == [
        (None, "base@1", "release", "ana"), ("base@1", "base@2", "release", "ana"),
        ("base@2", "base@3", "promote", "bo")]
    assert hist[1].decision_id == ids["base@2"] and hist[1].reason == "second"
    assert len(store.channel_history("base")) == 4
    assert store.rollback_target("base") == "base@2"
    store.move_channels([("base", "production", "base@2")], kind="rollback", reason="bad", actor="bo")
    assert store.channel("base") == "base@2"
    assert store.rollback_target("base") == "base@1"  # the target before base@2 went live
    assert [e.kind for e in store.ledger()].count("channel.rollback") == 1


def test_move_channels_is_atomic(store: Store, make_files: MakeFiles) -> None:
    store.add_version("base", make_files("b1"))
    store.add_version("support", make_files("s1"))
    release(store, [("base", "production", "base@1")], kind="release", reason="", actor="a")
    ids = passing(store, "base@1", "support@1")
    before = (store.channels("base"), store.channels("support"), len(store.channel_history("base")),
              len(store.ledger()))
    with pytest.raises(NotFoundError, match="no version support@9"):
        store.move_channels([("base", "canary", "base@1"), ("support", "production", "support@9")],
                            kind="release", reason="", actor="a", decision_ids=ids)
    with pytest.raises(MoveRefused, match="base@1 is a version of 'base', not of 'support'"):
        store.move_channels([("support", "production", "support@1"), ("support", "canary", "base@1")],
                            kind="release", reason="", actor="a", decision_ids=ids)
    with pytest.raises(MoveRefused, match="unknown channel 'prod'"):
        store.move_channels([("support", "production", "support@1"), ("support", "prod", "support@1")],
                            kind="release", reason="", actor="a", decision_ids=ids)
    after = (store.channels("base"), store.channels("support"), len(store.channel_history("base")),
             len(store.ledger()))
    # nothing moved; the ledger holds only the refusals of the moves the release rule forbids
    assert after[:3] == before[:3]
    assert [e.kind for e in store.ledger()[before[3]:]] == ["channel.refused", "channel.refused"]
    assert store.verify_ledger().ok


def test_crash_inside_a_write_leaves_no_version_and_no_ledger_entry(
        store: Store, make_files: MakeFiles, monkeypatch: pytest.MonkeyPatch) -> None:
    store.add_version("base", make_files("ok"))
    entries = store.ledger()

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("power cut")

    monkeypatch.setattr(ledger_mod, "append", crash)  # the version row is flushed, then the process "dies"
    with pytest.raises(RuntimeError, match="power cut"):
        store.add_version("base", make_files("lost"))
    monkeypatch.undo()
    with store._sessions() as s:
        assert s.execute(select(func.count()).select_from(VersionRow)).scalar() == 1
        assert s.execute(select(func.count()).select_from(VersionFileRow)).scalar() == 2
    assert store.ledger() == entries
    assert store.verify_ledger().ok
    # the next write takes the number the crashed one never got
    assert store.add_version("base", make_files("next")).id == "base@2"


def test_crash_after_channel_row_rolls_back_the_move(
        store: Store, make_files: MakeFiles, monkeypatch: pytest.MonkeyPatch) -> None:
    store.add_version("base", make_files("b1"))
    store.add_version("base", make_files("b2"))
    release(store, [("base", "production", "base@1")], kind="release", reason="", actor="a")
    real_append = ledger_mod.append
    calls = {"n": 0}

    def flaky(*args: object, **kwargs: object) -> LedgerRow:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("killed between the two moves")
        return real_append(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ledger_mod, "append", flaky)
    with pytest.raises(RuntimeError):
        release(store, [("base", "canary", "base@2"), ("base", "production", "base@2")],
                            kind="release", reason="", actor="a")
    monkeypatch.undo()
    assert store.channels("base")["production"] == "base@1" and store.channels("base")["canary"] is None
    with store._sessions() as s:
        assert s.execute(select(func.count()).select_from(ChannelMoveRow)).scalar() == 1
    assert store.verify_ledger().ok


def test_approvals_and_decisions_are_recorded(store: Store, make_files: MakeFiles) -> None:
    from loopgate.records import Decision, GateResult, Verdict

    store.add_version("base", make_files("a"))
    d = store.add_decision(Decision(version="base@1", verdict=Verdict.inconclusive, policy_sha256="p" * 64,
                                    gates=[GateResult(name="regression", verdict=Verdict.inconclusive)]))
    assert d.id is not None and store.decisions("base@1")[0].gates[0].name == "regression"
    store.add_approval("base@1", "carol", "small suite, looked by hand", overrides=["regression"], decision_id=d.id)
    (a,) = store.approvals("base@1")
    assert (a.approver, a.overrides, a.decision_id) == ("carol", ["regression"], d.id)
    kinds = [e.kind for e in store.ledger()]
    assert kinds[-2:] == ["decision", "approval"]
    with pytest.raises(NotFoundError):
        store.add_approval("base@5", "carol", "x", decision_id=d.id)
    store.add_version("base", make_files("b"))
    with pytest.raises(NotFoundError, match="no decision"):  # an approval approves a decision of its own version
        store.add_approval("base@2", "carol", "x", decision_id=d.id)


def test_registry_survives_reopening(tmp_path: Path, make_files: MakeFiles) -> None:
    s1 = Store(tmp_path / "home")
    s1.sync_lines({"base": ("foundation", None)})
    s1.add_version("base", make_files("a"))
    s1.close()
    s2 = Store(tmp_path / "home")
    assert s2.sync_lines({"base": ("foundation", None)}) == []  # already registered, no new ledger entry
    assert s2.version("base@1").line == "base"
    assert s2.verify_ledger().ok and s2.verify_ledger().entries == 2
    s2.close()


def test_rollback_to_the_first_release_leaves_no_target(store: Store, make_files: MakeFiles) -> None:
    store.add_version("base", make_files("b1"))
    store.add_version("base", make_files("b2"))
    release(store, [("base", "production", "base@1")], kind="release", reason="", actor="a")
    release(store, [("base", "production", "base@2")], kind="release", reason="", actor="a")
    store.move_channels([("base", "production", "base@1")], kind="rollback", reason="b2 broke", actor="a")
    assert store.rollback_target("base") is None  # never "back" onto the version just rolled back
    assert store.rollback_target("support") is None


@pytest.mark.parametrize("bad", ["support@²", "support@٣", "support@0", "support@-1", "@1", "support@",
                                 "support@99999999999999999999", "../x@1", "support@1\x00", "a" * 65 + "@1"])
def test_a_version_id_outside_the_pattern_is_a_clear_error(bad: str) -> None:
    """Unicode digits, numbers no database integer holds and line names outside the pattern are user errors
    (before: ValueError → a traceback in the CLI and a 500 from the API)."""
    from loopgate.store import parse_version_id

    with pytest.raises(LoopgateError, match="is not a version id"):
        parse_version_id(bad)
