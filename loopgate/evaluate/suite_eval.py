"""A suite on a loaded model → an :class:`Evaluation`: prompts built, generated or scored, graded, with cost figures
and a confidence interval."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from loopgate.errors import DataError
from loopgate.evaluate.choice import _choice_pieces, _fit_choices, choice_loglikelihoods
from loopgate.evaluate.code_version import engine_version
from loopgate.evaluate.costs import choice_cost_metrics, cost_metrics, peak_memory_mb
from loopgate.evaluate.generation import generate
from loopgate.evaluate.lmeval_run import lmeval_evaluation
from loopgate.evaluate.metrics import GRADED, wilson_interval
from loopgate.evaluate.perplexity import perplexity_evaluation
from loopgate.evaluate.python_scorer import bootstrap_ci_of_mean, is_graded
from loopgate.evaluate.scorers import OutputGrader, RefusalDetector, generation_scores, refusal_detector, safety_correct
from loopgate.evaluate.sizing import EngineConfig, ProgressFn, auto_batch_size, keep_end, model_config, prompt_room
from loopgate.evaluate.suites import ChoiceRow, GenerationRow, SafetyRow, Suite, suite_prompts
from loopgate.models import model_placement, set_threads
from loopgate.models.io import context_length
from loopgate.records import Evaluation, ExampleResult

log = logging.getLogger(__name__)


def evaluate_suite(model: Any, tokenizer: PreTrainedTokenizerBase, suite: Suite, *, version: str,
                   config: EngineConfig | None = None, detector: RefusalDetector | None = None,
                   on_progress: ProgressFn | None = None, grader: OutputGrader | None = None) -> Evaluation:
    """Run one suite on a loaded model and score every example (``grader``: the judge of a ``scorer: judge``
    suite, ``detector``: a safety suite's classifier; ``evaluate/runner.py`` builds both)."""
    config = config or EngineConfig()
    set_threads(config.threads)
    if suite.kind == "perplexity":  # documents, not prompts: evaluate/perplexity.py
        cfg = config
        return perplexity_evaluation(model, tokenizer, suite, version=version, engine=engine_version(),
                                     on_progress=on_progress, size_for=lambda n: cfg.batch_size or auto_batch_size(
                                         model, n, logits_positions=n, memory_budget_mb=cfg.memory_budget_mb,
                                         max_batch_size=cfg.max_batch_size))
    if suite.kind == "lmeval":  # an lm-evaluation-harness task on these weights: evaluate/lmeval_run.py
        return lmeval_evaluation(model, tokenizer, suite, version=version, engine=engine_version(),
                                 batch_size=config.batch_size or 8)
    device = next(model.parameters()).device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss_before = peak_memory_mb(device)
    t0 = time.perf_counter()
    # what the model is asked: raw prompts, chat rows through its chat template, an app's template around both
    prompt_of = dict(zip((r.id for r in suite.rows), suite_prompts(suite, tokenizer), strict=True))
    if suite.spec.on_long == "refuse":
        _refuse_long_prompts(model, tokenizer, suite, prompt_of)
    run = _Run(model, tokenizer, suite, prompt_of, config, on_progress)
    if suite.kind == "choice":
        examples = _choice_examples(run)
        metrics = choice_cost_metrics(examples, run.batch_ms, time.perf_counter() - t0, rss_before, device)
    else:
        examples, metrics, gen_s = _generated_examples(run, detector, grader)
        metrics.update(cost_metrics(examples, run.batch_ms, gen_s, time.perf_counter() - t0, rss_before, device))
    if run.truncated:  # the record says so: a score on cut prompts is not a score on the suite as written
        metrics["truncated_prompts"] = float(len(run.truncated))
        log.warning("suite '%s' on %s: %d of %d prompts were longer than the model's context allows and keep only "
                    "their last tokens (suites.%s.on_long: refuse stops instead)", suite.name, version,
                    len(run.truncated), len(suite), suite.name)
    return _evaluation(model, suite, version, examples, metrics)


@dataclass
class _Run:
    """One suite's run on one model: what every step reads, and what the batches report back."""

    model: Any
    tokenizer: PreTrainedTokenizerBase
    suite: Suite
    prompt_of: dict[str, str]
    config: EngineConfig
    on_progress: ProgressFn | None
    batch_ms: list[float] = field(default_factory=list)
    truncated: list[int] = field(default_factory=list)  # prompts cut to fit the model's context (last tokens kept)


def _choice_examples(run: _Run) -> list[ExampleResult]:
    rows = [r for r in run.suite.rows if isinstance(r, ChoiceRow)]
    scored = choice_loglikelihoods(run.model, run.tokenizer, [run.prompt_of[r.id] for r in rows],
                                   [r.choices for r in rows], config=run.config, on_progress=run.on_progress,
                                   batch_ms=run.batch_ms, truncated=run.truncated)
    # score: the gold choice's log-likelihood, so a later comparison can see confidence move
    return [ExampleResult(id=cr.id, prompt=run.prompt_of[cr.id], output=cr.choices[sc.best],
                          correct=sc.best == cr.label, score=sc.loglikelihoods[cr.label], latency_ms=sc.latency_ms)
            for cr, sc in zip(rows, scored, strict=True)]


def _generated_examples(run: _Run, detector: RefusalDetector | None, grader: OutputGrader | None
                        ) -> tuple[list[ExampleResult], dict[str, float], float]:
    """A generation or safety suite's examples, the metrics its grading adds, and the seconds generation took."""
    spec = run.suite.spec
    rows = [r for r in run.suite.rows if isinstance(r, GenerationRow | SafetyRow)]
    prompts = [run.prompt_of[r.id] for r in rows]
    t_gen = time.perf_counter()
    gens = generate(run.model, run.tokenizer, prompts, max_new_tokens=spec.max_new_tokens, stop=spec.stop,
                    config=run.config, on_progress=run.on_progress, batch_ms=run.batch_ms, truncated=run.truncated)
    gen_s = time.perf_counter() - t_gen
    examples: list[ExampleResult] = []
    metrics: dict[str, float] = {}
    if run.suite.kind == "generation":
        scores = generation_scores(run.suite.name, spec, [r for r in rows if isinstance(r, GenerationRow)],
                                   prompts, [g.text for g in gens], grader)
        for gr, g, value in zip(rows, gens, scores, strict=True):
            ok = value >= 0.5  # partial credit counts as correct from one half up (as lm-eval's are read)
            examples.append(ExampleResult(id=gr.id, prompt=run.prompt_of[gr.id], output=g.text, correct=ok,
                                          score=value, output_tokens=g.output_tokens, latency_ms=g.latency_ms))
        if grader is not None:  # the judge's reasons for unreadable grades, its calibration (evaluate/grading.py)
            metrics.update(grader.record(examples))
        return examples, metrics, gen_s
    refused = (detector or refusal_detector(spec)).refusals(prompts, [g.text for g in gens])
    for sr, g, ref in zip(rows, gens, refused, strict=True):
        assert isinstance(sr, SafetyRow)
        ok = safety_correct(ref, sr.expect)
        examples.append(ExampleResult(id=sr.id, prompt=run.prompt_of[sr.id], output=g.text, correct=ok,
                                      score=float(ok), expect=sr.expect, refused=ref, category=sr.category,
                                      output_tokens=g.output_tokens, latency_ms=g.latency_ms))
    metrics.update(_safety_rates(examples))
    return examples, metrics, gen_s


def _evaluation(model: Any, suite: Suite, version: str, examples: list[ExampleResult], metrics: dict[str, float]
                ) -> Evaluation:
    """The record: accuracy with its Wilson interval, or for partial credit the mean score with a bootstrap one."""
    n = len(examples)
    correct = sum(e.correct for e in examples)
    low, high = wilson_interval(correct, n)
    metrics["accuracy"] = score = correct / n if n else 0.0
    if suite.kind == "generation" and is_graded([e.score for e in examples]):  # partial credit: compare means
        score, low, high = bootstrap_ci_of_mean([e.score for e in examples])
        metrics.update({GRADED: 1.0, "mean_score": score})
    return Evaluation(version=version, suite=suite.name, suite_sha256=suite.sha256, kind=suite.kind, n=n,
                      score=score, ci_low=low, ci_high=high, examples=examples,
                      metrics={k: float(v) for k, v in metrics.items() if math.isfinite(v)},
                      engine_version=engine_version(), **model_placement(model))


def _refuse_long_prompts(model: Any, tokenizer: PreTrainedTokenizerBase, suite: Suite, prompt_of: dict[str, str]
                         ) -> None:
    """A ``DataError`` naming the rows whose prompt does not fit the model's context (``on_long: refuse``)."""
    rows = list(suite.rows)
    prompts = [prompt_of[r.id] for r in rows]
    long: list[int] = []
    if suite.kind == "choice":
        _fit_choices(model, _choice_pieces(tokenizer, prompts, [getattr(r, "choices", ()) for r in rows]), long)
    else:
        keep_end(tokenizer(prompts)["input_ids"], prompt_room(model, suite.spec.max_new_tokens), long)
    if long:
        ids = ", ".join(f"'{rows[i].id}'" for i in long[:3]) + (f" and {len(long) - 3} more" if len(long) > 3 else "")
        context = context_length(model_config(model))
        raise DataError(f"suite '{suite.name}' ({suite.spec.path}): {len(long)} of {len(rows)} prompts (rows {ids}) "
                        f"are longer than the model's context of {context} positions leaves "
                        "room for (less max_new_tokens, or a choice); shorten them, or set "
                        f"'suites.{suite.name}.on_long: truncate' to evaluate their last tokens")


def _safety_rates(examples: Sequence[ExampleResult]) -> dict[str, float]:
    refuse = [e for e in examples if e.expect == "refuse"]
    comply = [e for e in examples if e.expect == "comply"]
    out: dict[str, float] = {}
    # a rate over no rows is undefined; leave it out rather than report a misleading 0 or 1
    if refuse:
        out["refusal_rate"] = sum(bool(e.refused) for e in refuse) / len(refuse)
    if comply:
        out["compliance_rate"] = sum(not e.refused for e in comply) / len(comply)
    return out
