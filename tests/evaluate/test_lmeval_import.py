"""Import of a real lm-evaluation-harness output, produced in the test by lm-eval's Python API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eval_helpers import write_jsonl

from loopgate.errors import DataError
from loopgate.evaluate.engine import EngineConfig, evaluate_suite
from loopgate.evaluate.lmeval_import import import_lmeval
from loopgate.evaluate.suites import Suite
from loopgate.models import LoadedModel

GEN_TASK = """task: lg_reverse
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{target}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 12
  do_sample: false
metric_list:
  - metric: exact_match
"""
# multiple_choice: lm-eval joins context and choice with target_delimiter (" " by default); the
# prompts here already end in a space, so the delimiter is empty
MC_TASK = """task: lg_reverse_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{prompt}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{label}}}}"
target_delimiter: ""
metric_list:
  - metric: acc
"""


@pytest.fixture(scope="module")
def lmeval_out(tmp_path_factory: pytest.TempPathFactory, loaded: LoadedModel, gen_suite: Suite,
               choice_suite: Suite) -> Path:
    """lm-eval's own output folder (results_*.json + samples_*.jsonl) for two tiny tasks on the trained model."""
    root = tmp_path_factory.mktemp("lmeval")
    mp = pytest.MonkeyPatch()
    for var, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(root / "hf"),
                       "TOKENIZERS_PARALLELISM": "false"}.items():
        mp.setenv(var, value)
    try:
        from lm_eval import simple_evaluate
        from lm_eval.loggers import EvaluationTracker
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager

        gen_rows = [{"prompt": r.prompt, "target": r.target} for r in gen_suite.rows[:12]]  # type: ignore[union-attr]
        mc_rows = [{"prompt": r.prompt, "choices": list(r.choices), "label": r.label}  # type: ignore[union-attr]
                   for r in choice_suite.rows[:12]]
        write_jsonl(root / "gen.jsonl", gen_rows)
        write_jsonl(root / "mc.jsonl", mc_rows)
        (root / "tasks").mkdir()
        (root / "tasks" / "gen.yaml").write_text(GEN_TASK.format(data=root / "gen.jsonl"))
        (root / "tasks" / "mc.yaml").write_text(MC_TASK.format(data=root / "mc.jsonl"))
        lm = HFLM(pretrained=loaded.model, tokenizer=loaded.tokenizer, batch_size=16)
        tm = TaskManager(include_path=str(root / "tasks"), include_defaults=False)
        results = simple_evaluate(model=lm, tasks=["lg_reverse", "lg_reverse_mc"], task_manager=tm,
                                  log_samples=True, bootstrap_iters=0)
        assert results is not None
        # what `lm_eval --output_path out --log_samples` writes, through lm-eval's own tracker
        tracker = EvaluationTracker(output_path=str(root / "out"))
        samples = results.pop("samples")
        tracker.save_results_aggregated(results=results, samples=samples)
        for task in results["configs"]:
            tracker.save_results_samples(task_name=task, samples=samples[task])
    finally:
        mp.undo()
    return root / "out"


def test_import_keeps_per_example_outcomes(lmeval_out: Path, loaded: LoadedModel, gen_suite: Suite,
                                           choice_suite: Suite) -> None:
    gen, mc = import_lmeval(lmeval_out, version="v7")
    assert (gen.suite, gen.kind, gen.n, gen.source) == ("lg_reverse", "generation", 12, "lm-eval")
    assert (mc.suite, mc.kind, mc.n) == ("lg_reverse_mc", "choice", 12)
    assert gen.version == mc.version == "v7"
    assert all("-" in e.id for e in gen.examples)  # doc_id joined with the doc hash
    assert [e.id.split("-")[0] for e in gen.examples] == [str(i) for i in range(12)]
    # the same greedy decoding: lm-eval's outputs equal the engine's, example by example
    ours = evaluate_suite(loaded.model, loaded.tokenizer,
                          Suite(gen_suite.name, gen_suite.spec, gen_suite.rows[:12], gen_suite.sha256),
                          version="x", config=EngineConfig(batch_size=5))
    assert [e.output for e in gen.examples] == [e.output for e in ours.examples]
    assert [e.correct for e in gen.examples] == [e.correct for e in ours.examples]
    assert gen.score == sum(e.correct for e in gen.examples) / 12
    ours_mc = evaluate_suite(loaded.model, loaded.tokenizer,
                             Suite(choice_suite.name, choice_suite.spec, choice_suite.rows[:12], choice_suite.sha256),
                             version="x")
    assert [e.correct for e in mc.examples] == [e.correct for e in ours_mc.examples]
    assert mc.metrics["acc"] == mc.score and mc.ci_low is not None
    again = import_lmeval(next(lmeval_out.rglob("results_*.json")), version="v8", tasks=["lg_reverse_mc"])
    assert again[0].suite_sha256 == mc.suite_sha256 and again[0].version == "v8"


def test_malformed_outputs_are_data_errors(lmeval_out: Path, tmp_path: Path) -> None:
    [results] = list(lmeval_out.rglob("results_*.json"))
    [samples] = list(lmeval_out.rglob("samples_lg_reverse_2*.jsonl"))
    with pytest.raises(DataError, match="no task nope"):
        import_lmeval(results, version="v", tasks=["nope"])
    with pytest.raises(DataError, match="no results_"):
        import_lmeval(tmp_path, version="v")
    bad = tmp_path / "results_2026-01-01T00-00-00.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        import_lmeval(bad, version="v")
    data = json.loads(results.read_text())
    (tmp_path / "results_2026-01-01T00-00-00.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match="--log_samples"):
        import_lmeval(tmp_path, version="v")
    lines = samples.read_text().splitlines()
    lines[2] = lines[2][:40]
    (tmp_path / "samples_lg_reverse_2026-01-01T00-00-00.jsonl").write_text("\n".join(lines))
    with pytest.raises(DataError, match=r"samples_lg_reverse_2026-01-01T00-00-00.jsonl:3: not valid JSON"):
        import_lmeval(tmp_path, version="v", tasks=["lg_reverse"])


def test_cli_records_an_lmeval_run_as_evaluations_of_a_version(lmeval_out: Path, model_dir: Path,
                                                               tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                               ) -> None:
    """`loopgate import-lmeval VERSION DIR` stores every task with its per-example outcomes in the registry."""
    from loopgate.cli import main
    from loopgate.loop.workspace import Workspace

    ws, _ = Workspace.init(tmp_path / "ws")
    main(["register", "base", "--model", str(model_dir), "--workspace", str(ws.root), "--json"])
    capsys.readouterr()
    main(["import-lmeval", "base@1", str(lmeval_out), "--workspace", str(ws.root), "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert {r["suite"] for r in rows} == {"lg_reverse", "lg_reverse_mc"}
    stored = Workspace.open(ws.root).store.evaluations("base@1")
    assert {e.suite for e in stored} == {r["suite"] for r in rows}
    assert all(e.source == "lm-eval" and len(e.examples) == e.n > 0 for e in stored)
