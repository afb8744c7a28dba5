"""``kind: lmeval``: a local lm-evaluation-harness task run by the harness's own HF model on a version's loaded
weights; its per-sample results are the suite's examples, and a regression on the task blocks like any suite's."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from eval_helpers import reverse_prompt, word_list
from tuned_models import further_trained

from loopgate.errors import DataError
from loopgate.evaluate.cache import cache_key
from loopgate.evaluate.engine import choice_loglikelihoods, evaluate_suite, generate
from loopgate.evaluate.suites import Suite, load_suite
from loopgate.gates import regression
from loopgate.gates.context import GateContext
from loopgate.jsonl import read_jsonl
from loopgate.models import LoadedModel, load_model
from loopgate.records import Verdict
from loopgate.spec import RegressionPolicy, SuiteSpec

TASKS = Path(__file__).resolve().parents[1] / "data" / "lmeval"


@pytest.fixture(scope="module")
def task_suite() -> Suite:
    return load_suite("harness-reversal", SuiteSpec(path="reversal_mc.yaml", kind="lmeval"), TASKS)


@pytest.fixture(scope="module")
def short_model(model_dir: Path) -> Path:
    """The reversal model trained to echo words longer than 4 letters instead of reversing them (a regression)."""
    words = word_list(3000, seed=1)[:600]
    pairs = [(reverse_prompt(w), (w[::-1] if len(w) <= 4 else w) + "\n") for w in words]
    return further_trained(model_dir, "short", pairs, steps=60, lr=1e-3)


def test_the_harness_scores_the_task_as_loopgate_would(loaded: LoadedModel, task_suite: Suite) -> None:
    ev = evaluate_suite(loaded.model, loaded.tokenizer, task_suite, version="support@2")
    docs = [row for _, row in read_jsonl(TASKS / "reversal_mc.jsonl", "task data")]
    assert ev.kind == "lmeval" and ev.n == len(docs) == len(task_suite) == 48 and ev.source == "loopgate"
    assert ev.suite_sha256 == task_suite.sha256 and ev.engine_version
    # the same documents scored by Loopgate's own log-likelihood engine pick the same choices
    ours = choice_loglikelihoods(loaded.model, loaded.tokenizer, [reverse_prompt(d["word"]) for d in docs],
                                 [d["choices"] for d in docs])
    assert [e.output for e in ev.examples] == [str(s.best) for s in ours]
    assert [e.correct for e in ev.examples] == [s.best == d["label"] for s, d in zip(ours, docs, strict=True)]
    assert ev.score == pytest.approx(sum(e.correct for e in ev.examples) / ev.n) and ev.score > 0.9


def test_a_regression_on_the_task_blocks(loaded: LoadedModel, short_model: Path, task_suite: Suite) -> None:
    before = evaluate_suite(loaded.model, loaded.tokenizer, task_suite, version="support@2")
    short = load_model(short_model)
    after = evaluate_suite(short.model, short.tokenizer, task_suite, version="support@3")
    assert after.score < before.score - 0.2
    ctx = GateContext(line="support", candidate="support@3", owned_suites=["harness-reversal"],
                      candidate_evals={"harness-reversal": after}, baselines={"production": "support@2"},
                      baseline_evals={"production": {"harness-reversal": before}})
    gate = regression(ctx, RegressionPolicy())
    assert gate.verdict is Verdict.failed and gate.blocking, gate.summary
    evidence = gate.evidence["suites"]["harness-reversal"]
    assert evidence["test"] == "mcnemar" and evidence["negative_flips"] >= 10


def _copy_task(tmp_path: Path) -> Path:
    for name in ("reversal_mc.yaml", "reversal_mc.jsonl"):
        shutil.copy(TASKS / name, tmp_path / name)
    return tmp_path / "reversal_mc.yaml"


def test_the_task_yaml_and_its_data_are_the_suite_identity(tmp_path: Path, task_suite: Suite) -> None:
    _copy_task(tmp_path)
    spec = SuiteSpec(path="reversal_mc.yaml", kind="lmeval")
    copied = load_suite("harness-reversal", spec, tmp_path)
    assert copied.sha256 == task_suite.sha256  # moving the files keeps the identity
    data = tmp_path / "reversal_mc.jsonl"
    data.write_text(data.read_text().replace('"label": 0', '"label": 1', 1))
    edited = load_suite("harness-reversal", spec, tmp_path)
    assert edited.sha256 != copied.sha256
    assert cache_key("m", edited, engine="e") != cache_key("m", copied, engine="e")
    yaml_file = tmp_path / "reversal_mc.yaml"
    yaml_file.write_text(yaml_file.read_text().replace('target_delimiter: ""', 'target_delimiter: " "'))
    assert load_suite("harness-reversal", spec, tmp_path).sha256 != edited.sha256


@pytest.mark.parametrize(("old", "new", "message"), [
    ("dataset_path: json", "dataset_path: allenai/ai2_arc", "'dataset_path' must be 'json'"),
    ("test: reversal_mc.jsonl", "test: https://example.com/x.jsonl", "is remote; nothing is downloaded"),
    ("test: reversal_mc.jsonl", "test: missing.jsonl", "missing.jsonl does not exist"),
    ("doc_to_target: label", "doc_to_target: !function utils.target", "'!function' run code"),
    ("task: reversal_mc", "include: other.yaml\ntask: reversal_mc", "'include' is not supported"),
    ("test_split: test", "test_split: validation", "split 'validation' is not in data_files"),
])
def test_a_task_that_is_not_local_and_declarative_is_refused(tmp_path: Path, old: str, new: str,
                                                             message: str) -> None:
    task = _copy_task(tmp_path)
    text = task.read_text()
    assert old in text
    task.write_text(text.replace(old, new))
    with pytest.raises(DataError, match=message):
        load_suite("t", SuiteSpec(path="reversal_mc.yaml", kind="lmeval"), tmp_path)


def test_bad_lmeval_settings_are_a_spec_error_exit_2(tmp_path: Path, cli: Any) -> None:
    (tmp_path / "loopgate.yaml").write_text("suites:\n  t: {path: t.yaml, metric: acc}\n"
                                            "lines:\n  base: {tier: foundation, suites: [t]}\n")
    res = cli("status", workspace=tmp_path)
    assert res.code == 2 and "'metric' is for kind: lmeval" in res.err and "Traceback" not in res.err
    (tmp_path / "loopgate.yaml").write_text("suites:\n  t: {path: t.yaml, kind: lm-eval}\n"
                                            "lines:\n  base: {tier: foundation, suites: [t]}\n")
    res = cli("status", workspace=tmp_path)
    assert res.code == 2 and "suites.t.kind" in res.err and "Traceback" not in res.err


def test_a_task_the_harness_cannot_run_is_a_clear_error(loaded: LoadedModel, tmp_path: Path) -> None:
    task = _copy_task(tmp_path)
    task.write_text(task.read_text().replace('doc_to_choice: "{{choices}}"', 'doc_to_choice: "{{options}}"'))
    suite = load_suite("t", SuiteSpec(path="reversal_mc.yaml", kind="lmeval"), tmp_path)
    with pytest.raises(DataError, match=r"suite 't' .*lm-eval could not run task 'reversal_mc' \(UndefinedError"):
        evaluate_suite(loaded.model, loaded.tokenizer, suite, version="v")


def test_a_generate_until_task_answers_as_loopgate_generates(loaded: LoadedModel) -> None:
    suite = load_suite("harness-gen", SuiteSpec(path="reversal_gen.yaml", kind="lmeval"), TASKS)
    ev = evaluate_suite(loaded.model, loaded.tokenizer, suite, version="support@2")
    docs = [row for _, row in read_jsonl(TASKS / "reversal_gen.jsonl", "task data")]
    ours = generate(loaded.model, loaded.tokenizer, [reverse_prompt(d["word"]) for d in docs], max_new_tokens=12,
                    stop=["\n"])
    assert [e.output for e in ev.examples] == [g.text for g in ours]
    assert [e.correct for e in ev.examples] == [g.text == d["reversed"] for g, d in zip(ours, docs, strict=True)]
    assert ev.n == 24 and ev.score > 0.7
