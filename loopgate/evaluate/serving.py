"""Serving speed of a candidate against the version it would replace, measured back to back.

Latency is only comparable between runs made on the same machine, under the same load, with the same work;
a cached evaluation's latency was measured under none of those guarantees. And a batch's wall time mixes
two things: how *long* the answers are (a property of the outputs, already known exactly from the
evaluations, since decoding is greedy) and how *fast* the model produces tokens. Measured together, one row
that fails to stop drags a whole static batch and the figure swings with batch composition.

So this measures only the speed, with identical work for both models: the suite's prompts (the first
``max_rows``) are decoded for exactly ``tokens`` new tokens (no early stop), in one process, alternating
candidate and baseline for ``rounds`` rounds, keeping each model's best (least disturbed) round. The cost
gate turns that per-token time into per-request latency with each answer's real length.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from loopgate.evaluate.suites import Suite
from loopgate.models import load_model, set_threads
from loopgate.records import ServingCost


def _ms_per_token(model: Any, batches: list[dict[str, torch.Tensor]], tokens: int, pad: int) -> float:
    """Wall time per generated token per row: every row decodes exactly ``tokens`` tokens."""
    rows = sum(int(b["input_ids"].shape[0]) for b in batches)
    start = time.perf_counter()
    with torch.no_grad():
        for b in batches:
            model.generate(**b, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, num_beams=1,
                           pad_token_id=pad, temperature=None, top_p=None, top_k=None)
    return (time.perf_counter() - start) * 1000 / (rows * tokens)


def serving_cost(candidate_dir: Any, baseline_dir: Any, suites: list[Suite], *, rounds: int = 3,
                 max_rows: int = 64, tokens: int = 16, batch_size: int = 32, threads: int | None = None
                 ) -> list[ServingCost]:
    """Per suite: ``ms_per_token`` of the candidate (and of the baseline), same prompts, same work, best of
    ``rounds`` alternating rounds."""
    set_threads(threads)
    models = [load_model(candidate_dir)] + ([load_model(baseline_dir)] if baseline_dir is not None else [])
    out: list[ServingCost] = []
    for suite in suites:
        prompts = [r.prompt for r in suite.rows[:max_rows]]
        per_model: list[list[float]] = [[] for _ in models]
        prepared = []
        for m in models:
            tok = m.tokenizer
            pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
            batches = [dict(tok(prompts[i:i + batch_size], return_tensors="pt", padding=True))
                       for i in range(0, len(prompts), batch_size)]
            _ms_per_token(m.model, batches[:1], 2, pad)  # warm-up: first-call allocations are not the model's
            prepared.append((batches, pad))
        for _ in range(rounds):
            for i, m in enumerate(models):
                batches, pad = prepared[i]
                per_model[i].append(_ms_per_token(m.model, batches, tokens, pad))
        out.append(ServingCost(suite=suite.name, rows=len(prompts), rounds=rounds,
                               candidate={"ms_per_token": min(per_model[0])},
                               baseline={"ms_per_token": min(per_model[1])} if baseline_dir is not None else None))
    return out
