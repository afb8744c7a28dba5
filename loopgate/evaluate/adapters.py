"""Evaluate several adapter versions of one base through one loaded base, never merged.

A propagation wave or a tuning study evaluates many adapters of the same base; :func:`evaluate_adapters` loads
that base once (:class:`~loopgate.models.adapters.SharedBase`, the gateway's path) and evaluates each adapter on
it in turn instead of merging each into its own copy. Results go through the same content-keyed cache, under the
same keys, as :func:`~loopgate.evaluate.runner.evaluate_model`'s, and the answers are the merged model's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from loopgate.evaluate.cache import EvaluationCache, cache_key, directory_model_key
from loopgate.evaluate.classifier import refusal_classifier
from loopgate.evaluate.engine import EngineConfig, evaluate_suite
from loopgate.evaluate.grading import judge_grader
from loopgate.evaluate.suites import Suite
from loopgate.models.adapters import AdapterSlot, SharedBase, adapter_name
from loopgate.records import Evaluation


def evaluate_adapters(base_dir: str | Path, adapters: Sequence[tuple[str, Path, str | None]],
                      suites: list[Suite] | dict[str, list[Suite]], *, cache_dir: str | Path | None = None,
                      config: EngineConfig | None = None) -> dict[str, list[Evaluation]]:
    """Evaluations per version of ``adapters`` — (version, adapter folder, model key or None) on ``base_dir`` — on
    ``suites`` (in suite order; a dict gives each version its own), from the cache where possible; the base is
    loaded once, on the first miss."""
    cfg = config or EngineConfig()
    cache = EvaluationCache(cache_dir) if cache_dir is not None else None
    shared: SharedBase | None = None
    out: dict[str, list[Evaluation]] = {}
    for version, adapter_dir, model_key in adapters:
        mine = suites[version] if isinstance(suites, dict) else suites
        key = model_key or directory_model_key(Path(base_dir), Path(adapter_dir))
        keys = [cache_key(key, s) for s in mine]
        results: list[Evaluation | None] = [cache.get(k, version=version) if cache else None for k in keys]
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:
            # a budget of 0: only the adapter being evaluated stays loaded, whatever the number of versions
            shared = shared or SharedBase(Path(base_dir), budget_bytes=0)
            shared.activate(AdapterSlot(adapter_name(version, key), Path(adapter_dir)))
            for i in missing:
                ev = evaluate_suite(shared.model, shared.tokenizer, mine[i], version=version, config=cfg,
                                    grader=judge_grader(mine[i], cfg), detector=refusal_classifier(mine[i], cfg))
                ev = ev.model_copy(update={"cache_key": keys[i]})
                results[i] = cache.put(keys[i], ev) if cache else ev
        out[version] = [r for r in results if r is not None]
    return out
