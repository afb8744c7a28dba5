"""``kind: perplexity``: how well a version still predicts held-out text the line must keep.

Each row is a document (``{"id", "text"}``). Its negative log-likelihood (NLL, nats) is the sum over its tokens,
the first one included: the model reads the text after its BOS token (EOS when it has none, as lm-eval's rolling
log-likelihood does). A document longer than the model's context is read in sliding windows: each window scores
only tokens no earlier window scored, with up to ``context − stride`` earlier tokens as context.

The per-example score is **bits per byte** — NLL / ln 2 / the text's UTF-8 byte count — which does not depend on
the tokenizer, so two versions with different tokenizers compare on it. Lower is better: the paired gates read
the direction from the evaluation's kind (``loopgate.evaluate.metrics.LOWER_IS_BETTER``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from loopgate.evaluate.metrics import bootstrap_ci
from loopgate.evaluate.suites import Suite, TextRow
from loopgate.models import model_placement
from loopgate.models.io import context_length
from loopgate.records import Evaluation, ExampleResult

SizeFn = Callable[[int], int]  # longest sequence in a batch → rows per batch


@dataclass(frozen=True)
class DocumentNLL:
    """One document's summed NLL (nats) over ``tokens`` tokens, and its UTF-8 size."""

    nll: float
    tokens: int
    bytes: int

    @property
    def bits_per_byte(self) -> float:
        return self.nll / math.log(2) / self.bytes


@dataclass(frozen=True)
class _Window:
    doc: int
    ids: list[int]
    first_scored: int  # positions before this one are context only


def windows(n: int, context: int | None, stride: int | None) -> list[tuple[int, int, int]]:
    """``(start, end, first_scored)`` over a sequence of ``n`` tokens whose positions 1…n−1 are predicted: each
    window is at most ``context`` long and scores positions ``first_scored``…``end − 1`` exactly once."""
    if context is None or n <= context:
        return [(0, n, 1)]
    step = min(stride or context // 2, context - 1)  # a window must keep one token of context before its first
    out: list[tuple[int, int, int]] = []
    scored, end = 1, context
    while True:
        start = max(0, end - context)
        out.append((start, end, max(scored, start + 1)))
        if end == n:
            return out
        scored, end = end, min(end + max(step, 1), n)


def _prefix_id(tokenizer: Any) -> int | None:
    for tid in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if tid is not None:
            return int(tid)
    return None


def _document_windows(model: Any, tokenizer: Any, texts: Sequence[str], stride: int | None) -> list[_Window]:
    context = context_length(model.config)
    prefix = _prefix_id(tokenizer)
    out: list[_Window] = []
    for d, text in enumerate(texts):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        # without a BOS/EOS token the first token has nothing to be predicted from and goes unscored
        seq = ([prefix] if prefix is not None else []) + list(ids)
        for start, end, first in windows(len(seq), context, stride):
            out.append(_Window(d, seq[start:end], first - start))
    return out


@torch.inference_mode()
def document_nlls(model: Any, tokenizer: Any, texts: Sequence[str], *, size_for: SizeFn, stride: int | None = None,
                  on_progress: Callable[[int], None] | None = None) -> list[DocumentNLL]:
    """Summed NLL of each text, windows batched by length (right padding: positions start at 0 in every row)."""
    wins = _document_windows(model, tokenizer, texts, stride)
    nll = [0.0] * len(texts)
    count = [0] * len(texts)
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = sorted(range(len(wins)), key=lambda i: -len(wins[i].ids))
    i = 0
    while i < len(order):
        batch = order[i: i + max(1, size_for(len(wins[order[i]].ids)))]
        i += len(batch)
        width = len(wins[batch[0]].ids)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, w in enumerate(batch):
            ids[r, : len(wins[w].ids)] = torch.tensor(wins[w].ids)
            mask[r, : len(wins[w].ids)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        token_lp = logits[:, :-1].float().log_softmax(-1).gather(-1, ids[:, 1:, None].to(device))[..., 0].cpu()
        for r, w in enumerate(batch):
            win = wins[w]
            # logits at position j predict token j + 1: the scored tokens first_scored…len−1
            nll[win.doc] -= float(token_lp[r, win.first_scored - 1: len(win.ids) - 1].sum())
            count[win.doc] += len(win.ids) - win.first_scored
        if on_progress is not None:
            on_progress(len({wins[w].doc for w in batch}))
    return [DocumentNLL(nll[d], count[d], len(t.encode("utf-8"))) for d, t in enumerate(texts)]


def perplexity_evaluation(model: Any, tokenizer: Any, suite: Suite, *, version: str, engine: str,
                          size_for: SizeFn, on_progress: Callable[[int], None] | None = None) -> Evaluation:
    """The suite's documents scored in bits per byte (the evaluation's score: their mean, lower is better)."""
    rows = [r for r in suite.rows if isinstance(r, TextRow)]
    t0 = time.perf_counter()
    docs = document_nlls(model, tokenizer, [r.text for r in rows], size_for=size_for, stride=suite.spec.stride,
                         on_progress=on_progress)
    wall = time.perf_counter() - t0
    bpb = [d.bits_per_byte for d in docs]
    # correct: the document was measured; there is no right or wrong here, only the score moving (paired)
    examples = [ExampleResult(id=r.id, correct=True, score=b, prompt=r.text[:200], output_tokens=d.tokens)
                for r, d, b in zip(rows, docs, bpb, strict=True)]
    mean = sum(bpb) / len(bpb)
    low, high = bootstrap_ci(bpb)
    tokens = sum(d.tokens for d in docs)
    total_nll = sum(d.nll for d in docs)
    metrics = {
        "bits_per_byte": mean,
        "corpus_bits_per_byte": total_nll / math.log(2) / sum(d.bytes for d in docs),
        # per token: depends on the tokenizer, so compare it only between versions that share one
        "token_perplexity": math.exp(total_nll / tokens) if tokens else math.inf,
        "tokens": float(tokens),
        "wall_s": wall,
        "items_per_s": len(rows) / wall if wall > 0 else 0.0,
    }
    return Evaluation(version=version, suite=suite.name, suite_sha256=suite.sha256, kind=suite.kind, n=len(rows),
                      score=mean, ci_low=low, ci_high=high, examples=examples,
                      metrics={k: float(v) for k, v in metrics.items() if math.isfinite(v)},
                      engine_version=engine, **model_placement(model))
