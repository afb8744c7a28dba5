"""Run a ``kind: lmeval`` suite: lm-evaluation-harness's own ``HFLM`` wraps the version's already loaded model
and tokenizer, so the task is scored by the harness exactly as a team runs it, on the weights being gated.

The harness's per-sample results go through the files lm-eval itself writes (``--log_samples``) and are read back
by :func:`loopgate.evaluate.lmeval_import.import_lmeval`: one reader for imported and gated runs, so both give the
same examples (ids ``<doc_id>-<doc_hash>``, correct when the metric is at least 0.5). Nothing is downloaded:
``HF_DATASETS_OFFLINE`` is set and the task's data are local files (:mod:`loopgate.evaluate.lmeval_suite`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from loopgate.errors import DataError
from loopgate.evaluate.lmeval_import import import_lmeval
from loopgate.evaluate.lmeval_suite import task_config
from loopgate.evaluate.suites import Suite
from loopgate.models import model_placement
from loopgate.records import Evaluation


def _run_harness(model: Any, tokenizer: Any, config: dict[str, Any], batch_size: int) -> dict[str, Any]:
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # before `datasets` is first imported
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    device = str(next(model.parameters()).device)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=device)
    # include_defaults=False: the built-in task index (thousands of YAML files) is not scanned; only this task runs
    results = simple_evaluate(model=lm, tasks=[config], log_samples=True, bootstrap_iters=0,
                              task_manager=TaskManager(include_defaults=False))
    if results is None:  # only on a non-zero rank of a distributed run, which this never is
        raise DataError(f"lm-eval returned no results for task '{config['task']}'")
    return dict(results)


def _write_like_lmeval(results: dict[str, Any], folder: Path) -> None:
    from lm_eval.loggers import EvaluationTracker

    samples = results.pop("samples")
    tracker = EvaluationTracker(output_path=str(folder))
    tracker.save_results_aggregated(results=results, samples=samples)
    for task in results["configs"]:
        tracker.save_results_samples(task_name=task, samples=samples[task])


def lmeval_evaluation(model: Any, tokenizer: Any, suite: Suite, *, version: str, engine: str,
                      batch_size: int = 8) -> Evaluation:
    """The suite's lm-eval task run on the loaded model; every scored document is one example."""
    import jinja2  # lm-eval's prompt templates: a field the documents lack is the task's error, not ours

    where = f"suite '{suite.name}' ({suite.file})"
    config = task_config(suite.name, Path(suite.file))
    try:
        results = _run_harness(model, tokenizer, config, batch_size)
    except DataError:
        raise
    except (ValueError, KeyError, TypeError, IndexError, FileNotFoundError, jinja2.TemplateError) as err:
        raise DataError(f"{where}: lm-eval could not run task '{config['task']}' ({type(err).__name__}: {err}); "
                        "check the task YAML against lm-eval's task guide") from None
    with tempfile.TemporaryDirectory(prefix="loopgate-lmeval-") as tmp:
        _write_like_lmeval(results, Path(tmp))
        try:
            (ev,) = import_lmeval(tmp, version=version, tasks=[config["task"]], metric=suite.spec.metric)
        except DataError as err:  # said of a temporary folder: say it of the suite
            raise DataError(f"{where}: {str(err).replace(tmp, 'the harness output')}; set "
                            f"'suites.{suite.name}.metric' to a per-sample metric of the task") from None
    return ev.model_copy(update={
        "suite": suite.name, "suite_sha256": suite.sha256, "kind": suite.kind, "engine_version": engine,
        "source": "loopgate", "metrics": {**ev.metrics, "lm_eval_task_score": ev.score}, **model_placement(model)})
