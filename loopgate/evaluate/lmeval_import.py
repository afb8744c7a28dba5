"""Import lm-evaluation-harness outputs (``results_*.json`` + ``samples_<task>_*.jsonl``) as Evaluations.

Teams with existing lm-eval runs can gate on them: every task becomes one Evaluation with its
per-example outcomes (from the samples file written with ``--log_samples``), so flips can be computed.

An example's id is ``<doc_id>-<doc_hash[:16]>`` when lm-eval recorded a ``doc_hash``: two runs join on
the same document only when the document itself is unchanged. A sample is correct when its metric
value is at least 0.5 (lm-eval's per-sample ``acc`` / ``exact_match`` are 0 or 1).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loopgate.errors import DataError
from loopgate.evaluate.metrics import wilson_interval
from loopgate.hashing import sha256_json
from loopgate.jsonl import read_jsonl
from loopgate.records import Evaluation, ExampleResult

_KIND = {"multiple_choice": "choice", "loglikelihood": "choice", "generate_until": "generation"}
_PREFERRED_METRICS = ("acc", "exact_match", "acc_norm", "em", "f1")


def find_results_file(path: str | Path) -> Path:
    """``path`` itself if it is a results file, else the newest ``results_*.json`` below the folder."""
    p = Path(path)
    if p.is_file():
        return p
    if not p.is_dir():
        raise DataError(f"{p} does not exist; pass lm-eval's --output_path folder or one results_*.json file")
    found = sorted(p.rglob("results_*.json"), key=lambda f: f.name)
    if not found:
        raise DataError(f"no results_*.json under {p}; was lm-eval run with --output_path?")
    return found[-1]  # names end in an ISO timestamp, so the last one is the newest run


def import_lmeval(path: str | Path, *, version: str, tasks: list[str] | None = None,
                  metric: str | None = None) -> list[Evaluation]:
    """Evaluations (one per task, in the results file's order) from an lm-eval output folder or results file."""
    results_file = find_results_file(path)
    results = _read_json(results_file)
    configs = results.get("configs")
    scores = results.get("results")
    if not isinstance(configs, dict) or not isinstance(scores, dict):
        raise DataError(f"{results_file}: missing 'results' or 'configs'; is this an lm-eval results file?")
    wanted = list(configs) if tasks is None else tasks
    unknown = [t for t in wanted if t not in configs]
    if unknown:
        raise DataError(f"{results_file}: no task {', '.join(unknown)}; tasks in this run: {', '.join(configs)}")
    date_id = results_file.stem.removeprefix("results_")
    out: list[Evaluation] = []
    for task in wanted:
        samples_file = _samples_file(results_file.parent, task, date_id)
        out.append(_task_evaluation(task, configs[task], scores.get(task, {}), samples_file, results,
                                    version=version, metric=metric))
    return out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err}); pass an unmodified lm-eval results file") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object at the top level")
    return data


def _samples_file(folder: Path, task: str, date_id: str) -> Path:
    exact = folder / f"samples_{task}_{date_id}.jsonl"
    if exact.is_file():
        return exact
    # a task name may itself contain underscores, so match on the whole "samples_<task>_" prefix
    candidates = sorted(f for f in folder.glob(f"samples_{task}_*.jsonl")
                        if f.name.removeprefix(f"samples_{task}_")[:1].isdigit())
    if not candidates:
        raise DataError(f"no samples_{task}_*.jsonl next to the results in {folder}; "
                        "re-run lm-eval with --log_samples to keep per-example outcomes")
    return candidates[-1]


def _read_samples(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for lineno, row in read_jsonl(path, "lm-eval samples file"):
        if "doc_id" not in row:
            raise DataError(f"{path}:{lineno}: missing field 'doc_id'")
        row["_line"] = lineno
        rows.append(row)
    if not rows:
        raise DataError(f"{path}: no samples")
    return rows


def _choose_metric(config: dict[str, Any], sample: dict[str, Any], metric: str | None, where: str) -> str:
    if metric is not None:
        if metric not in sample:
            raise DataError(f"{where}: metric '{metric}' is not in the samples; they hold {sample.get('metrics')}")
        return metric
    declared = [m.get("metric") for m in config.get("metric_list", []) if isinstance(m, dict)]
    for m in [*declared, *(sample.get("metrics") or []), *_PREFERRED_METRICS]:
        if isinstance(m, str) and isinstance(sample.get(m), int | float):
            return m
    raise DataError(f"{where}: no numeric per-sample metric found; pass metric= explicitly")


def _output(sample: dict[str, Any]) -> str | None:
    resp = sample.get("filtered_resps")
    if isinstance(resp, list) and resp and isinstance(resp[0], str):
        return resp[0]  # generate_until: the (filtered) generation
    if isinstance(resp, list) and resp and all(isinstance(r, list) and r for r in resp):
        try:  # loglikelihood per choice: the index of the most likely one
            lls = [float(r[0]) for r in resp]
        except (TypeError, ValueError):
            return None
        return str(max(range(len(lls)), key=lambda k: lls[k]))
    return None


def _prompt(sample: dict[str, Any]) -> str | None:
    args = sample.get("arguments")
    if isinstance(args, dict):
        first = args.get("gen_args_0")
        if isinstance(first, dict) and isinstance(first.get("arg_0"), str):
            return str(first["arg_0"])
    return None


def _task_evaluation(task: str, config: dict[str, Any], agg: dict[str, Any], samples_file: Path,
                     results: dict[str, Any], *, version: str, metric: str | None) -> Evaluation:
    samples = _read_samples(samples_file)
    where = str(samples_file)
    name = _choose_metric(config, samples[0], metric, where)
    # one doc appears once per filter; keep the filter lm-eval reported first for this metric
    filters = [k.split(",", 1)[1] for k in agg if k.startswith(f"{name},") and "_stderr" not in k]
    chosen = filters[0] if filters else samples[0].get("filter", "none")
    examples: list[ExampleResult] = []
    identity: list[tuple[Any, ...]] = []
    for s in samples:
        if s.get("filter", chosen) != chosen:
            continue
        value = s.get(name)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise DataError(f"{where}:{s['_line']}: field '{name}' must be a number, got {value!r}")
        doc_hash = s.get("doc_hash")
        ex_id = f"{s['doc_id']}-{doc_hash[:16]}" if isinstance(doc_hash, str) and doc_hash else str(s["doc_id"])
        examples.append(ExampleResult(id=ex_id, correct=float(value) >= 0.5, score=float(value),
                                      output=_output(s), prompt=_prompt(s)))
        identity.append((s["doc_id"], doc_hash, s.get("prompt_hash"), s.get("target_hash")))
    n = len(examples)
    correct = sum(e.correct for e in examples)
    mean = sum(e.score for e in examples) / n if n else 0.0
    reported = agg.get(f"{name},{chosen}")
    score = float(reported) if isinstance(reported, int | float) else mean
    low, high = wilson_interval(correct, n)
    output_type = str(config.get("output_type", ""))
    suite_sha = sha256_json({
        "source": "lm-eval", "task": task, "output_type": output_type, "metric": name, "filter": chosen,
        "num_fewshot": config.get("num_fewshot"), "docs": identity,
    })
    return Evaluation(
        version=version, suite=task, suite_sha256=suite_sha, kind=_KIND.get(output_type, output_type or "generation"),
        n=n, score=score, ci_low=low, ci_high=high, examples=examples,
        metrics={"accuracy": correct / n if n else 0.0, name: score},
        engine_version=f"lm-eval {results.get('lm_eval_version', '?')}", source="lm-eval",
    )
