"""Inheritance gate: keep the parent's level on inherited suites, and don't fall below the previous version."""

from __future__ import annotations

from gate_helpers import context, ev, right_wrong

from loopgate.gates import inheritance
from loopgate.records import Verdict
from loopgate.spec import InheritancePolicy

POLICY = InheritancePolicy()  # tolerance 0.1


def _ctx(cand: list[int], parent: list[int] | None, previous: list[int] | None = None):  # type: ignore[no-untyped-def]
    base_evals = {}
    if parent is not None:
        base_evals["parent"] = {"general": ev("general", parent, "base@4")}
    if previous is not None:
        base_evals["previous"] = {"general": ev("general", previous, "support@2")}
    return context(inherited_suites=["general"], candidate_evals={"general": ev("general", cand, "support@3")},
                   baselines={"parent": "base@4", "previous": "support@2" if previous is not None else None},
                   baseline_evals=base_evals)


def test_no_inherited_suites_passes() -> None:
    r = inheritance(context(), POLICY)
    assert r.verdict is Verdict.passed and "inherits no suites" in r.summary


def test_keeping_the_parents_level_passes() -> None:
    r = inheritance(_ctx(right_wrong(40, {3}), right_wrong(40, {3, 4}), right_wrong(40, {3})), POLICY)
    assert r.verdict is Verdict.passed, r.summary
    assert set(r.evidence["suites"]["general"]["checks"]) == {"parent", "previous"}


def test_losing_an_inherited_capability_fails() -> None:
    r = inheritance(_ctx(right_wrong(40, range(30)), right_wrong(40)), POLICY)
    assert r.verdict is Verdict.failed
    parent = r.evidence["suites"]["general"]["checks"]["parent"]
    assert parent["verdict"] == Verdict.failed and parent["version"] == "base@4"
    assert parent["delta"] == -0.75 and len(parent["negative_flip_ids"]) == 30
    assert "vs parent base@4" in r.summary


def test_falling_below_its_own_previous_version_fails() -> None:
    half = right_wrong(40, range(20))
    # the parent is at 0.5 too, so only the comparison with the previous version (1.0) catches it
    r = inheritance(_ctx(half, half, right_wrong(40)), POLICY)
    assert r.verdict is Verdict.failed
    checks = r.evidence["suites"]["general"]["checks"]
    assert checks["parent"]["verdict"] == Verdict.passed and checks["previous"]["verdict"] == Verdict.failed


def test_parent_not_evaluated_is_inconclusive() -> None:
    r = inheritance(_ctx(right_wrong(40), None), POLICY)
    assert r.verdict is Verdict.inconclusive
    assert "not evaluated" in r.summary


def test_too_small_inherited_suite_is_inconclusive() -> None:
    r = inheritance(_ctx(right_wrong(8), right_wrong(8)), POLICY)
    assert r.verdict is Verdict.inconclusive
