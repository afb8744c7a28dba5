"""Rollback-readiness gate: never ship what you cannot undo."""

from __future__ import annotations

import pytest
from gate_helpers import context

from loopgate.gates import RollbackCheck, rollback
from loopgate.records import Verdict
from loopgate.spec import RollbackPolicy

READY = RollbackCheck(target="support@2", exists=True, hashes_ok=True, loads=True, smoke_suite="faq",
                      smoke_score=0.9)


def test_ready_target_passes() -> None:
    r = rollback(context(rollback=READY), RollbackPolicy())
    assert r.verdict is Verdict.passed and r.evidence["target"] == "support@2"


def test_first_release_passes() -> None:
    r = rollback(context(rollback=RollbackCheck(target=None)), RollbackPolicy())
    assert r.verdict is Verdict.passed and "first release" in r.summary
    assert rollback(context(baselines={"production": None}), RollbackPolicy()).verdict is Verdict.passed


def test_unchecked_target_is_inconclusive() -> None:
    r = rollback(context(baselines={"production": "support@2"}), RollbackPolicy())
    assert r.verdict is Verdict.inconclusive


@pytest.mark.parametrize("broken, words", [
    ({"exists": False, "error": "no version support@2"}, "does not exist"),
    ({"hashes_ok": False}, "hashes do not verify"),
    ({"loads": False}, "does not load"),
    ({"smoke_score": 0.4, "recorded_smoke_score": 0.9}, "scored 0.900 when it shipped"),
])
def test_a_target_that_cannot_serve_blocks_the_release(broken: dict[str, object], words: str) -> None:
    r = rollback(context(rollback=READY.model_copy(update=broken)), RollbackPolicy())
    assert r.verdict is Verdict.failed and r.blocking
    assert words in r.summary


def test_a_weak_line_that_still_behaves_as_shipped_is_ready() -> None:
    """No absolute floor by default: a production version at 0.32 that still scores 0.32 is a fine target."""
    weak = READY.model_copy(update={"smoke_score": 0.32, "recorded_smoke_score": 0.32})
    r = rollback(context(rollback=weak), RollbackPolicy())
    assert r.verdict is Verdict.passed and r.evidence["smoke_drift"] == 0.0
    within = weak.model_copy(update={"smoke_score": 0.30})
    assert rollback(context(rollback=within), RollbackPolicy(smoke_tolerance=0.05)).verdict is Verdict.passed
    assert rollback(context(rollback=within), RollbackPolicy(smoke_tolerance=0.01)).verdict is Verdict.failed


def test_an_absolute_floor_applies_only_when_set() -> None:
    weak = READY.model_copy(update={"smoke_score": 0.1, "recorded_smoke_score": 0.1})
    assert rollback(context(rollback=weak), RollbackPolicy()).verdict is Verdict.passed
    r = rollback(context(rollback=weak), RollbackPolicy(min_smoke_score=0.5))
    assert r.verdict is Verdict.failed and "smoke score 0.100 < 0.5" in r.summary


def test_configured_smoke_suite_must_have_run() -> None:
    rb = READY.model_copy(update={"smoke_score": None})
    assert rollback(context(rollback=rb), RollbackPolicy(smoke_suite="faq")).verdict is Verdict.failed
    assert rollback(context(rollback=rb), RollbackPolicy()).verdict is Verdict.passed
