"""``scorer: judge``: a tiny judge model grades open-ended answers, is measured against human labels (Cohen's κ),
blocks a regression only when calibrated, and a new judge version is a new suite version (no stale scores).

The world (tests/evaluate/grading_world.py): a *helpful* model answers every request "Sure, here is how.", a *curt*
one "Figure it out."; neither matches the reference answers word for word, so exact match scores both 0 and sees
no regression. The judge, trained to say whether an answer is helpful, sees all of it.
"""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import pytest
from grading_world import DATA, JUDGE_RUBRIC, THINGS, ask, model

from loopgate.errors import DataError, SpecError
from loopgate.evaluate.graders import grader_model
from loopgate.evaluate.grading import cohen_kappa, judge_grader, parse_grade
from loopgate.evaluate.runner import evaluate_model
from loopgate.evaluate.suites import Suite, load_suite, with_grader
from loopgate.gates.context import GateContext
from loopgate.gates.regression import regression
from loopgate.models.io import ModelRef
from loopgate.records import Evaluation, Verdict
from loopgate.spec import JudgeSpec, RegressionPolicy, SuiteSpec, parse_ecosystem


@pytest.fixture(scope="module")
def answers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("answers")
    rows = [{"id": f"a{i}", "prompt": ask(t), "target": f"Sure: to make {t}, start with the basics."}
            for i, t in enumerate(THINGS)]
    (root / "answers.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return root


def judged(root: Path, labels: str | None, judge: str = "judge") -> Suite:
    """The answers suite scored by the tiny judge (resolved as if the line 'grader' held it), with these labels."""
    spec = JudgeSpec(line="grader", rubric=JUDGE_RUBRIC, calibration=str(DATA / labels) if labels else None)
    suite = load_suite("answers", SuiteSpec(path="answers.jsonl", scorer="judge", judge=spec, max_new_tokens=40),
                       root)
    grader = grader_model(spec, root, lambda line, channel: (f"{line}@{judge}", ModelRef(model(judge))),
                          where="suites.answers.judge")
    return with_grader(suite, grader)


@pytest.fixture(scope="module")
def evaluations(answers_dir: Path) -> dict[str, dict[str, Evaluation]]:
    """helpful (the production baseline) and curt (the candidate) on the exact, calibrated and disputed suites."""
    suites = {"exact": load_suite("answers", SuiteSpec(path="answers.jsonl", max_new_tokens=40), answers_dir),
              "calibrated": judged(answers_dir, "judge_labels.jsonl"),
              "disputed": judged(answers_dir, "judge_labels_disputed.jsonl")}
    out: dict[str, dict[str, Evaluation]] = {}
    for name, version in (("helpful", "support@1"), ("curt", "support@2")):
        evs = evaluate_model(model(name), list(suites.values()), version=version)
        out[name] = dict(zip(suites, evs, strict=True))
    return out


def gate(evaluations: dict[str, dict[str, Evaluation]], suite: str) -> dict:
    ctx = GateContext(line="support", candidate="support@2", owned_suites=["answers"],
                      candidate_evals={"answers": evaluations["curt"][suite]},
                      baselines={"production": "support@1"},
                      baseline_evals={"production": {"answers": evaluations["helpful"][suite]}})
    res = regression(ctx, RegressionPolicy(judge_min_kappa=0.6))
    return {"verdict": res.verdict, **res.evidence["suites"]["answers"]}


def test_exact_match_sees_no_regression_the_judge_does(evaluations: dict[str, dict[str, Evaluation]]) -> None:
    assert evaluations["helpful"]["exact"].score == evaluations["curt"]["exact"].score == 0.0
    assert gate(evaluations, "exact")["verdict"] is not Verdict.failed
    assert evaluations["helpful"]["calibrated"].score >= 0.9  # the judge calls "Sure, here is how." helpful
    assert evaluations["curt"]["calibrated"].score <= 0.1


def test_a_calibrated_judge_blocks_the_regression(evaluations: dict[str, dict[str, Evaluation]]) -> None:
    ev = evaluations["curt"]["calibrated"]
    assert ev.metrics["judge_labels"] == 12 and ev.metrics["judge_kappa"] >= 0.9
    result = gate(evaluations, "calibrated")
    assert result["verdict"] is Verdict.failed
    assert result["judge_calibration"]["calibrated"] is True
    assert result["judge_calibration"]["kappa"] >= 0.9


def test_an_uncalibrated_judge_only_warns_and_says_why(evaluations: dict[str, dict[str, Evaluation]]) -> None:
    # the same judge, the same answers: only the human labels differ, and they agree with it no more than chance
    ev = evaluations["curt"]["disputed"]
    assert ev.score == evaluations["curt"]["calibrated"].score
    result = gate(evaluations, "disputed")
    assert result["verdict"] is Verdict.inconclusive
    calibration = result["judge_calibration"]
    assert calibration["calibrated"] is False and calibration["labels"] == 12 and calibration["min_kappa"] == 0.6
    assert calibration["kappa"] < 0.3
    assert "warn only" in result["reason"] and "κ" in result["reason"]


def test_an_unreadable_judge_answer_is_a_recorded_failure(answers_dir: Path) -> None:
    # a "judge" that answers every rubric "Sure, here is how.": no yes/no, no number
    ev = evaluate_model(model("curt"), [judged(answers_dir, None, judge="helpful")], version="support@2")[0]
    assert ev.score == 0.0 and ev.metrics["judge_unparsed"] == len(THINGS) and ev.metrics["judge_labels"] == 0
    assert all(e.reason and "no yes/no or number" in e.reason for e in ev.examples)


def test_the_judge_version_is_part_of_the_suite_and_cache_identity(answers_dir: Path, tmp_path: Path) -> None:
    suites = [judged(answers_dir, "judge_labels.jsonl", judge) for judge in ("judge", "harsh")]
    assert suites[0].sha256 != suites[1].sha256
    cache = tmp_path / "cache"
    first, second = (evaluate_model(model("helpful"), [s], version="support@1", cache_dir=cache)[0] for s in suites)
    assert first.cache_key != second.cache_key
    assert first.score >= 0.9 and second.score <= 0.1  # a cached score of the old judge would read >= 0.9
    assert evaluate_model(model("helpful"), suites[:1], version="support@1", cache_dir=cache)[0] == first


def test_a_workspace_judge_follows_its_line_production(tmp_path: Path) -> None:
    from decided import release

    from loopgate.loop.evaluation import evaluate_version
    from loopgate.loop.versions import register_model
    from loopgate.loop.workspace import Workspace

    spec = f"""\
suites:
  answers:
    path: answers.jsonl
    max_new_tokens: 40
    scorer: judge
    judge: {{line: grader, rubric: {json.dumps(JUDGE_RUBRIC)}, calibration: labels.jsonl}}
lines:
  grader: {{tier: foundation}}
  support: {{tier: foundation, suites: [answers]}}
"""
    ws, _ = Workspace.init(tmp_path / "ws", spec_text=spec)
    try:
        rows = [{"id": f"a{i}", "prompt": ask(t), "target": "-"} for i, t in enumerate(THINGS[:20])]
        (ws.root / "answers.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        (ws.root / "labels.jsonl").write_bytes((DATA / "judge_labels.jsonl").read_bytes())
        support = register_model(ws, "support", model("helpful")).id
        with pytest.raises(Exception, match="grader line 'grader'.*no production version"):
            evaluate_version(ws, support, ["answers"])
        judge1 = register_model(ws, "grader", model("judge")).id
        release(ws.store, [("grader", "production", judge1)])
        before = evaluate_version(ws, support, ["answers"])["answers"]
        judge2 = register_model(ws, "grader", model("harsh")).id
        release(ws.store, [("grader", "production", judge2)])
        after = evaluate_version(ws, support, ["answers"])["answers"]
    finally:
        ws.store.close()
    assert before.score >= 0.9 and after.score <= 0.1  # the registry did not hand back judge 1's evaluation
    assert before.suite_sha256 != after.suite_sha256 and before.cache_key != after.cache_key


def test_judge_answers_are_read_as_yes_no_or_a_number() -> None:
    assert parse_grade("Yes, it is.") == 1.0 and parse_grade(" no") == 0.0
    assert parse_grade("Score: 7/10", scale=10) == pytest.approx(0.7)
    assert parse_grade("12", scale=10) == 1.0  # clipped
    assert parse_grade("3, not yes", scale=10) == pytest.approx(0.3)  # the first of the two wins
    assert parse_grade("yesterday") is None and parse_grade("maybe") is None


def test_kappa_matches_scikit_learn() -> None:
    cohen_kappa_score = pytest.importorskip("sklearn.metrics").cohen_kappa_score  # not a dependency: a cross-check
    rng = random.Random(0)
    for _ in range(20):
        n = rng.randint(4, 40)
        a = [rng.random() < 0.6 for _ in range(n)]
        b = [x if rng.random() < 0.7 else not x for x in a]
        if len(set(a)) == len(set(b)) == 1:
            continue
        assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)
    assert math.isnan(cohen_kappa([True, True], [True, True]))


@pytest.mark.parametrize(("judge", "message"), [
    ({"line": "nobody"}, "suites.answers.judge.line: unknown line 'nobody'"),
    ({"line": "helpdesk"}, "is an app"),
    ({"line": "base", "base_url": "http://x/v1", "model": "m"}, "exactly one of the two"),
    ({"base_url": "http://x/v1"}, "needs 'model:'"),
    ({"base_url": "file:///etc/passwd", "model": "m"}, "must be an http"),
    ({"line": "base", "rubric": "no answer here"}, "must contain {output}"),
    ({"base_url": "http://x/v1", "model": "m", "api_key_env": "A KEY"}, "must name an environment variable"),
])
def test_bad_judges_are_spec_errors(judge: dict, message: str) -> None:
    data = {"suites": {"answers": {"path": "a.jsonl", "scorer": "judge", "judge": judge}},
            "lines": {"base": {"tier": "foundation", "suites": ["answers"]},
                      "helpdesk": {"tier": "app", "parent": "base", "app": {}}}}
    with pytest.raises(SpecError, match=re.escape(message)):
        parse_ecosystem(data)


@pytest.mark.parametrize(("suite", "message"), [
    ({"scorer": "judge"}, "scorer: judge needs a 'judge:' section"),
    ({"judge": {"line": "base"}}, "'judge:' is for scorer: judge"),
    ({"kind": "safety", "scorer": "judge", "judge": {"line": "base"}}, "scores generation suites"),
])
def test_judge_fields_fit_the_scorer(suite: dict, message: str) -> None:
    data = {"suites": {"answers": {"path": "a.jsonl", **suite}}, "lines": {"base": {"tier": "foundation"}}}
    with pytest.raises(SpecError, match=message):
        parse_ecosystem(data)


def test_a_bad_calibration_file_is_a_clear_error(answers_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "labels.jsonl"
    bad.write_text('{"prompt": "p", "output": "o", "label": "maybe"}\n', encoding="utf-8")
    spec = JudgeSpec(line="grader", calibration=str(bad))
    with pytest.raises(DataError, match=r"labels.jsonl:1: field 'label' must be true/false"):
        grader_model(spec, tmp_path, lambda line, channel: ("grader@1", ModelRef(model("judge"))), where="x")
    with pytest.raises(DataError, match="resolved through a workspace"):
        grader_model(JudgeSpec(line="grader"), tmp_path, None, where="suites.answers.judge")


def test_a_judge_behind_an_openai_compatible_url_grades_like_the_same_judge_in_process(
        answers_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The judge line served by a real ``loopgate serve`` gateway (uvicorn, the openai SDK) grades as it does
    in-process: the same pass/fail on every answer and the same κ against the labels."""
    from decided import release
    from server.gateway_world import Server

    from loopgate.loop.versions import register_model
    from loopgate.loop.workspace import Workspace
    from loopgate.store import gateway as gw

    ws, _ = Workspace.init(tmp_path / "ws", spec_text="lines:\n  grader: {tier: foundation}\n")
    judge = register_model(ws, "grader", model("judge")).id
    release(ws.store, [("grader", "production", judge)])
    monkeypatch.setenv("JUDGE_KEY", gw.create_key(ws.store, "grader", actor="alice")[0])
    ws.store.close()
    server = Server(ws.root)
    try:
        spec = JudgeSpec(base_url=server.url, model="grader", api_key_env="JUDGE_KEY", rubric=JUDGE_RUBRIC,
                         max_new_tokens=4,
                         calibration=str(DATA / "judge_labels.jsonl"))
        suite = load_suite("answers", SuiteSpec(path="answers.jsonl", scorer="judge", judge=spec, max_new_tokens=40),
                           answers_dir)
        url_judged = with_grader(suite, grader_model(spec, answers_dir, None, where="suites.answers.judge"))
        by_url = {name: evaluate_model(model(name), [url_judged], version=name)[0] for name in ("helpful", "curt")}
    finally:
        server.stop()
    in_process = {name: evaluate_model(model(name), [judged(answers_dir, "judge_labels.jsonl")], version=name)[0]
                  for name in ("helpful", "curt")}
    for name in ("helpful", "curt"):
        assert [e.correct for e in by_url[name].examples] == [e.correct for e in in_process[name].examples]
        assert by_url[name].metrics["judge_kappa"] == in_process[name].metrics["judge_kappa"] >= 0.9
    assert by_url["helpful"].score >= 0.9 and by_url["curt"].score <= 0.1
    assert url_judged.sha256 != judged(answers_dir, "judge_labels.jsonl").sha256  # URL + model, not a version id
    monkeypatch.delenv("JUDGE_KEY")
    with pytest.raises(DataError, match=r"\$JUDGE_KEY, which is not set"):
        judge_grader(url_judged)
