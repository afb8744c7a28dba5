"""Serving speed of a candidate against the version it would replace, measured back to back.

Latency is only comparable between runs made on the same machine, under the same load, with the same work;
a cached evaluation's latency was measured under none of those guarantees. And a batch's wall time mixes
two things: how *long* the answers are (a property of the outputs, already known exactly from the
evaluations, since decoding is greedy) and how *fast* the model produces tokens. Measured together, one row
that fails to stop drags a whole static batch and the figure swings with batch composition.

So this measures only the speed, with identical work for both models: the suite's prompts (the first
``max_rows``) are decoded for exactly ``tokens`` new tokens (no early stop), in one process, on one thread,
each batch by the candidate and then the baseline, ``rounds`` times, and each model's median is kept. The cost
gate turns that per-token time into per-request latency with each answer's real length.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from loopgate.evaluate.suites import Suite, suite_prompts
from loopgate.models import load_model, set_threads
from loopgate.records import ServingCost


def _ms_per_token(model: Any, batch: dict[str, torch.Tensor], tokens: int, pad: int) -> float:
    """Wall time per generated token per row: every row decodes exactly ``tokens`` tokens."""
    start = time.perf_counter()
    with torch.no_grad():
        model.generate(**batch, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, num_beams=1,
                       pad_token_id=pad, temperature=None, top_p=None, top_k=None)
    return (time.perf_counter() - start) * 1000 / (int(batch["input_ids"].shape[0]) * tokens)


def serving_cost(candidate_dir: Any, baseline_dir: Any, suites: list[Suite], *, rounds: int = 3,
                 max_rows: int = 64, tokens: int = 16, batch_size: int = 16) -> list[ServingCost]:
    """Per suite: ``ms_per_token`` of the candidate (and of the baseline) on the same prompts and work, each
    batch served by both models back to back, ``rounds`` times; the median over those batches.

    One intra-op thread whatever ``LOOPGATE_THREADS`` says: on a busy 2-core machine two threads made small ops
    up to 50× slower in bursts (FIELD-NOTES), and a burst that hits one model's batch and not the other's is
    exactly the noise a ratio cannot survive. Alternating per batch and taking medians does the rest.
    """
    previous = torch.get_num_threads()
    set_threads(1)
    try:
        models = [load_model(candidate_dir)] + ([load_model(baseline_dir)] if baseline_dir is not None else [])
        out: list[ServingCost] = []
        for suite in suites:
            prompts = suite_prompts(suite, models[0].tokenizer)[:max_rows]  # chat rows rendered, app templates applied
            prepared = []
            for m in models:
                tok = m.tokenizer
                pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
                batches = [dict(tok(prompts[i:i + batch_size], return_tensors="pt", padding=True))
                           for i in range(0, len(prompts), batch_size)]
                _ms_per_token(m.model, batches[0], 2, pad)  # warm-up: first-call allocations are not the model's
                prepared.append((batches, pad))
            samples: list[list[float]] = [[] for _ in models]
            for _ in range(rounds):
                for b in range(len(prepared[0][0])):
                    for i, m in enumerate(models):
                        batches, pad = prepared[i]
                        samples[i].append(_ms_per_token(m.model, batches[b], tokens, pad))
            figures = [{"ms_per_token": float(statistics.median(x)), "samples": float(len(x))} for x in samples]
            out.append(ServingCost(suite=suite.name, rows=len(prompts), rounds=rounds, candidate=figures[0],
                                   baseline=figures[1] if baseline_dir is not None else None))
        return out
    finally:
        set_threads(previous)
