"""``scorer: python``: a team's function scores the answers; exact match ranks a verbose-but-correct version below
a wrong-but-short one, the python scorer ranks them right and its suite blocks the regression exact match misses."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from eval_helpers import reverse_prompt, word_list, write_jsonl
from tuned_models import further_trained

from loopgate.errors import DataError, SpecError
from loopgate.evaluate.cache import cache_key
from loopgate.evaluate.engine import evaluate_suite
from loopgate.evaluate.metrics import paired_comparison
from loopgate.evaluate.suites import Suite, load_suite
from loopgate.gates import regression
from loopgate.gates.context import GateContext
from loopgate.models import LoadedModel, load_model
from loopgate.records import Evaluation, ExampleResult, Verdict
from loopgate.spec import RegressionPolicy, SuiteSpec

SCORERS = Path(__file__).resolve().parents[1] / "data" / "scorers"
SCORER = "reversal_scorer:reversed_word"


@pytest.fixture(autouse=True)
def _team_code_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(SCORERS))  # as a team puts its own package on the path


@pytest.fixture(scope="module")
def rows_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pyscore")
    words = word_list(40, seed=2)
    write_jsonl(root / "gen.jsonl", [{"id": f"w{i}", "prompt": reverse_prompt(w), "target": w[::-1]}
                                     for i, w in enumerate(words)])
    return root


def _suites(root: Path) -> list[Suite]:
    return [load_suite("reverse-exact", SuiteSpec(path="gen.jsonl", max_new_tokens=24), root),
            load_suite("reverse-python", SuiteSpec(path="gen.jsonl", max_new_tokens=24, scorer="python",
                                                   function=SCORER), root)]


@pytest.fixture(scope="module")
def versions(model_dir: Path) -> dict[str, Path]:
    """verbose: answers "<reversed> is the answer"; short: reverses words of up to 4 letters, echoes longer ones."""
    words = word_list(3000, seed=1)[:600]
    verbose = [(reverse_prompt(w), w[::-1] + " is the answer\n") for w in words]
    short = [(reverse_prompt(w), (w[::-1] if len(w) <= 4 else w) + "\n") for w in words]
    return {"verbose": further_trained(model_dir, "verbose", verbose, steps=60, lr=1e-3),
            "short": further_trained(model_dir, "short", short, steps=60, lr=1e-3)}


def _evaluate(path: Path, version: str, suites: list[Suite]) -> dict[str, Evaluation]:
    loaded = load_model(path)
    return {s.name: evaluate_suite(loaded.model, loaded.tokenizer, s, version=version) for s in suites}


def test_python_scorer_ranks_verbose_correct_above_short_wrong(versions: dict[str, Path], rows_dir: Path) -> None:
    suites = _suites(rows_dir)
    verbose = _evaluate(versions["verbose"], "support@2", suites)
    short = _evaluate(versions["short"], "support@3", suites)
    assert verbose["reverse-exact"].examples[0].output.endswith(" is the answer")  # type: ignore[union-attr]
    # exact match ranks them wrong...
    assert verbose["reverse-exact"].score < 0.1 < 0.4 < short["reverse-exact"].score
    # ...the team's scorer ranks them right, with partial credit for the near misses
    assert verbose["reverse-python"].score > 0.9 > 0.85 > short["reverse-python"].score
    assert short["reverse-python"].metrics["graded"] == 1.0
    assert any(0.0 < e.score < 0.5 for e in short["reverse-python"].examples)
    cmp = paired_comparison(verbose["reverse-python"], short["reverse-python"])
    assert cmp.test == "sign" and cmp.ci_high < -0.05 and cmp.mcnemar_p < 0.01

    ctx = GateContext(line="support", candidate="support@3", owned_suites=[s.name for s in suites],
                      candidate_evals=short, baselines={"production": "support@2"},
                      baseline_evals={"production": verbose})
    gate = regression(ctx, RegressionPolicy())
    assert gate.verdict is Verdict.failed and gate.blocking, gate.summary
    assert gate.evidence["suites"]["reverse-python"]["verdict"] is Verdict.failed
    assert gate.evidence["suites"]["reverse-exact"]["verdict"] is Verdict.passed  # the suite that misses it


def test_boolean_scores_keep_mcnemar(loaded: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_jsonl(tmp_path / "g.jsonl", [{"id": f"w{i}", "prompt": reverse_prompt(w), "target": w[::-1]}
                                       for i, w in enumerate(word_list(6, seed=2))])
    (tmp_path / "exact_team.py").write_text("def same(prompt, output, row):\n    return output == row['target']\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    suite = load_suite("b", SuiteSpec(path="g.jsonl", max_new_tokens=8, scorer="python", function="exact_team:same"),
                       tmp_path)
    ev = evaluate_suite(loaded.model, loaded.tokenizer, suite, version="v")
    assert "graded" not in ev.metrics and all(e.score in (0.0, 1.0) for e in ev.examples)
    assert ev.score == ev.metrics["accuracy"] and paired_comparison(ev, ev).test == "mcnemar"


@pytest.mark.parametrize(("function", "message"), [
    ("reversal_scorer:broken", r"suite 'bad', row 'w3': scorer function 'reversal_scorer:broken' raised KeyError"),
    ("reversal_scorer:out_of_range", r"row 'w0': scorer function 'reversal_scorer:out_of_range' returned 7.0"),
    ("reversal_scorer:nothing_here", r"'reversal_scorer' has no callable 'nothing_here'"),
])
def test_errors_in_the_team_function_name_the_row(loaded: LoadedModel, rows_dir: Path, function: str,
                                                 message: str) -> None:
    suite = load_suite("bad", SuiteSpec(path="gen.jsonl", max_new_tokens=4, scorer="python", function=function),
                       rows_dir)
    with pytest.raises((DataError, SpecError), match=message):
        evaluate_suite(loaded.model, loaded.tokenizer, suite, version="v")


@pytest.mark.parametrize("function", ["os.system('rm -rf /')", "reversal_scorer", "a b:c", "__import__('os'):x",
                                      "mod:fn()", ""])
def test_the_name_is_checked_before_anything_is_imported(tmp_path: Path, cli: Any, function: str) -> None:
    (tmp_path / "loopgate.yaml").write_text(
        f"suites:\n  s: {{path: s.jsonl, scorer: python, function: {function!r}}}\n"
        "lines:\n  base: {tier: foundation, suites: [s]}\n")
    res = cli("status", workspace=tmp_path)
    assert res.code == 2 and "suites.s" in res.err and "package.module:function" in res.err
    assert "Traceback" not in res.err


def test_a_module_that_is_not_there_is_a_clear_error(rows_dir: Path) -> None:
    with pytest.raises(SpecError, match="cannot find module 'no_such_team_module'"):
        load_suite("s", SuiteSpec(path="gen.jsonl", scorer="python", function="no_such_team_module:f"), rows_dir)


def test_the_function_source_is_part_of_the_suite_and_cache_identity(tmp_path: Path, rows_dir: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(rows_dir / "gen.jsonl", tmp_path / "gen.jsonl")
    (tmp_path / "team_scorer.py").write_text("def score(prompt, output, row):\n    return 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = SuiteSpec(path="gen.jsonl", scorer="python", function="team_scorer:score")
    first = load_suite("s", spec, tmp_path)
    assert load_suite("s", spec, tmp_path).sha256 == first.sha256  # stable while nothing changes
    (tmp_path / "team_scorer.py").write_text("def score(prompt, output, row):\n    return 0.0\n")
    edited = load_suite("s", spec, tmp_path)
    assert edited.sha256 != first.sha256
    assert cache_key("model", edited, engine="e") != cache_key("model", first, engine="e")


def _scored(scores: list[float], graded: bool) -> Evaluation:
    examples = [ExampleResult(id=f"q{i}", correct=s >= 0.5, score=s) for i, s in enumerate(scores)]
    return Evaluation(version="v", suite="s", suite_sha256="x", kind="generation", n=len(scores),
                      score=sum(scores) / len(scores), examples=examples, metrics={"graded": 1.0} if graded else {})


def test_graded_scores_compare_means_with_the_sign_test_booleans_keep_mcnemar() -> None:
    before = _scored([1.0] * 30, graded=False)
    after = _scored([0.5] * 10 + [1.0] * 20, graded=True)  # ten answers lose half their credit, none flips
    cmp = paired_comparison(before, after)
    assert cmp.test == "sign" and cmp.delta == pytest.approx(-10 * 0.5 / 30)
    assert cmp.mcnemar_p == pytest.approx(2 / 2**10) and cmp.negative_flips == 0  # 10 worse, 0 better
    flipped = _scored([0.0] * 10 + [1.0] * 20, graded=False)
    plain = paired_comparison(before, flipped)
    assert plain.test == "mcnemar" and plain.delta == pytest.approx(-1 / 3) and plain.negative_flips == 10
