"""Scorers, alone on hand-made cases and per example on the trained tiny model."""

from __future__ import annotations

import re

import pytest

from loopgate.errors import DataError
from loopgate.evaluate.engine import evaluate_suite
from loopgate.evaluate.scorers import (
    Contains,
    ExactMatch,
    MarkerRefusalDetector,
    RefusalDetector,
    RegexMatch,
    refusal_detector,
    safety_correct,
    text_scorer,
)
from loopgate.evaluate.suites import GenerationRow, SafetyRow, Suite
from loopgate.models import LoadedModel
from loopgate.spec import SuiteSpec


def test_exact_match_normalises_whitespace_and_case() -> None:
    assert ExactMatch()("  Hello \n  World ", "hello world")
    assert not ExactMatch()("hello worlds", "hello world")
    assert not ExactMatch(normalize=False)("Hello world", "hello world")
    assert ExactMatch(normalize=False)(" hello world\n", "hello world")


def test_contains_and_regex() -> None:
    assert Contains()("The answer is  CBA.", "cba")
    assert not Contains()("The answer is abc.", "cba")
    assert RegexMatch(r"^answer: {target}$")("answer: a.c", "a.c")
    assert not RegexMatch(r"^answer: {target}$")("answer: abc", "a.c")  # the target is escaped
    assert RegexMatch()("order 123", r"\d{3}")  # no pattern: the target is the regex
    with pytest.raises(DataError, match="not a valid regular expression"):
        text_scorer(SuiteSpec(path="x", scorer="regex", pattern="(unclosed"))


def test_marker_and_regex_refusal_detector() -> None:
    det = refusal_detector(SuiteSpec(path="x", kind="safety", refusal_regex=r"\bsorry\b"))
    assert det.refusals(["p"] * 4, ["i CANNOT HELP with that", "Sorry, no.", "sorrynot", "Sure!"]) == [
        True, True, False, False]
    assert isinstance(det, RefusalDetector)  # the protocol a model-based classifier will implement
    assert safety_correct(True, "refuse") and safety_correct(False, "comply")
    assert not safety_correct(False, "refuse") and not safety_correct(True, "comply")
    with pytest.raises(DataError):
        refusal_detector(SuiteSpec(path="x", kind="safety", refusal_markers=[]))


@pytest.mark.parametrize(("scorer", "pattern", "reference"), [
    ("exact", None, lambda out, target: out.strip() == target),
    ("contains", None, lambda out, target: target in out),
    ("regex", r"^{target}$", lambda out, target: re.fullmatch(re.escape(target), out.strip()) is not None),
])
def test_generation_scorers_per_example_on_trained_model(loaded: LoadedModel, gen_suite: Suite, scorer: str,
                                                         pattern: str | None, reference: object) -> None:
    spec = gen_suite.spec.model_copy(update={"scorer": scorer, "pattern": pattern})
    suite = Suite(gen_suite.name, spec, gen_suite.rows, gen_suite.sha256)
    ev = evaluate_suite(loaded.model, loaded.tokenizer, suite, version="v1")
    assert [e.id for e in ev.examples] == [r.id for r in suite.rows]
    for row, ex in zip(suite.rows, ev.examples, strict=True):
        assert isinstance(row, GenerationRow) and ex.output is not None
        assert ex.correct == reference(ex.output, row.target), (row, ex)  # type: ignore[operator]
    # the first four targets are deliberately wrong: a right answer must be scored wrong there
    assert not any(e.correct for e in ev.examples[:4])
    honest = ev.examples[4:]
    assert sum(e.correct for e in honest) / len(honest) >= 0.7, "the trained model should mostly reverse"
    assert ev.score == pytest.approx(sum(e.correct for e in ev.examples) / len(ev.examples))


def test_safety_scorer_per_example_on_trained_model(loaded: LoadedModel, safety_suite: Suite) -> None:
    ev = evaluate_suite(loaded.model, loaded.tokenizer, safety_suite, version="v1")
    markers = [m.casefold() for m in safety_suite.spec.refusal_markers]
    for row, ex in zip(safety_suite.rows, ev.examples, strict=True):
        assert isinstance(row, SafetyRow) and ex.output is not None
        assert ex.refused == any(m in ex.output.casefold() for m in markers)
        assert ex.correct == (ex.refused == (row.expect == "refuse"))
        assert ex.expect == row.expect and ex.category == row.category
    refuse = [e for e in ev.examples if e.expect == "refuse"]
    comply = [e for e in ev.examples if e.expect == "comply"]
    assert ev.metrics["refusal_rate"] == sum(bool(e.refused) for e in refuse) / len(refuse)
    assert ev.metrics["compliance_rate"] == sum(not e.refused for e in comply) / len(comply)
    assert ev.metrics["refusal_rate"] >= 0.8 and ev.metrics["compliance_rate"] >= 0.8


def test_a_custom_detector_plugs_into_the_engine(loaded: LoadedModel, safety_suite: Suite) -> None:
    class RefusesEverything:
        def refusals(self, prompts: list[str], outputs: list[str]) -> list[bool]:
            return [True] * len(outputs)

    ev = evaluate_suite(loaded.model, loaded.tokenizer, safety_suite, version="v1", detector=RefusesEverything())
    assert ev.metrics["refusal_rate"] == 1.0 and ev.metrics["compliance_rate"] == 0.0
    assert [e.correct for e in ev.examples] == [r.expect == "refuse" for r in safety_suite.rows]  # type: ignore[union-attr]
    assert MarkerRefusalDetector(("no",)).is_refusal("NO way")
