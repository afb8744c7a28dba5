"""Evaluate one model directory on several suites, through the content-keyed cache.

``evaluate_model`` is a plain function of its inputs (paths, suites, keys) so that an executor can run
it in another process or on a Ray worker; it loads the model only when some suite misses the cache.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from loopgate.evaluate.cache import EvaluationCache, cache_key, directory_model_key
from loopgate.evaluate.classifier import refusal_classifier
from loopgate.evaluate.engine import EngineConfig, ProgressFn, evaluate_suite
from loopgate.evaluate.grading import judge_grader
from loopgate.evaluate.suites import Suite
from loopgate.models import ModelRef, load_model, model_ref
from loopgate.records import Evaluation
from loopgate.train.progress import PlainProgress, stderr_is_terminal


def evaluate_model(model_dir: str | Path | ModelRef, suites: list[Suite], *, version: str, model_key: str | None = None,
                   cache_dir: str | Path | None = None, adapter_dir: str | Path | None = None,
                   batch_size: int | None = None, progress: bool = False,
                   config: EngineConfig | None = None) -> list[Evaluation]:
    """Evaluations of the model on ``suites`` (in suite order), from the cache where possible.

    ``model_key`` identifies the weights (the registry passes a hash of the version's artifact sha256s);
    without it the model and adapter files are hashed. A fully cached run loads no weights at all.
    """
    cfg = config or EngineConfig()
    if batch_size is not None:
        cfg = EngineConfig(batch_size=batch_size, max_batch_size=cfg.max_batch_size,
                           memory_budget_mb=cfg.memory_budget_mb, threads=cfg.threads)
    cache = EvaluationCache(cache_dir) if cache_dir is not None else None
    ref = model_ref(model_dir, adapter_dir)  # an adapter is merged in memory for inference
    key = model_key or directory_model_key(ref.base, ref.adapter)
    keys = [cache_key(key, s) for s in suites]
    results: list[Evaluation | None] = [cache.get(k, version=version) if cache else None for k in keys]
    missing = [i for i, r in enumerate(results) if r is None]
    if missing:
        loaded = load_model(ref.base, ref.adapter, merge=True)
        total = sum(len(suites[i]) for i in missing)
        with _progress_bar(progress, total) as advance:
            for i in missing:
                # a judge or classifier suite brings its own model, loaded only on a cache miss
                ev = evaluate_suite(loaded.model, loaded.tokenizer, suites[i], version=version, config=cfg,
                                    on_progress=advance, grader=judge_grader(suites[i], cfg),
                                    detector=refusal_classifier(suites[i], cfg))
                ev = ev.model_copy(update={"cache_key": keys[i]})
                results[i] = cache.put(keys[i], ev) if cache else ev
    return [r for r in results if r is not None]


@contextmanager
def _progress_bar(enabled: bool, total: int) -> Iterator[ProgressFn | None]:
    if not enabled:
        yield None
        return
    if not stderr_is_terminal():  # a pipe or a log: a plain line every few seconds, not a bar drawn at the end
        plain = PlainProgress(total, "evaluating", unit="example")
        yield plain.advance
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  transient=True) as bar:
        task = bar.add_task("evaluate", total=total)
        yield lambda n: bar.advance(task, n)
