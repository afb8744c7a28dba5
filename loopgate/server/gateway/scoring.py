"""Log-probabilities of prompts' own tokens (``echo`` with ``logprobs``), one forward pass per batch.

Each position's distribution is a ``log_softmax`` in float32 of the model's logits there, the way
:func:`loopgate.evaluate.engine.choice_loglikelihoods` scores a choice: lm-eval's log-likelihood requests through
the gateway then agree with Loopgate's own multiple-choice evaluation (``tests/server/test_lmeval_conformance.py``).
The first token has nothing to be predicted from: its log-probability is ``None``, as OpenAI's legacy API,
vLLM and lm-eval have it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

TopK = list[tuple[int, float]]  # (token id, log-probability), most likely first


@dataclass(frozen=True)
class Scored:
    """A prompt's per-token log-probabilities (the first ``None``), the ``k`` most likely tokens at each
    position (the first empty), and the most likely next token after the prompt with its log-probability."""

    token_ids: list[int]
    logprobs: list[float | None]
    top: list[TopK]
    next_token: tuple[int, float]
    next_top: TopK


def _pad(model: Any) -> int:
    pad = getattr(getattr(model, "config", None), "pad_token_id", None)
    return int(pad) if pad is not None else 0


@torch.inference_mode()
def score_prompts(model: Any, prompts: Sequence[Sequence[int]], k: int,
                  adapter_names: Sequence[str] | None = None) -> list[Scored]:
    """Score every prompt's tokens (right-padded into one batch: positions start at 0 in every row) and keep the
    ``k`` most likely tokens at each position (at least 1, for the next token). ``adapter_names`` names each row's
    adapter on a shared base (:mod:`loopgate.models.adapters`)."""
    device = next(model.parameters()).device
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), _pad(model), dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for r, p in enumerate(prompts):
        ids[r, : len(p)] = torch.tensor(list(p))
        mask[r, : len(p)] = 1
    per_row = {"adapter_names": list(adapter_names)} if adapter_names is not None else {}
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), **per_row).logits
    out = []
    for r, p in enumerate(prompts):
        lp = logits[r, : len(p)].float().log_softmax(-1)  # row t predicts token t + 1
        targets = torch.tensor(list(p[1:]), dtype=torch.long, device=lp.device)
        own = lp[torch.arange(len(p) - 1, device=lp.device), targets].tolist() if len(p) > 1 else []
        vals, idx = lp.topk(max(1, min(k, lp.shape[-1])), dim=-1)
        tops = [list(zip(i, v, strict=True)) for i, v in zip(idx.tolist(), vals.tolist(), strict=True)]
        out.append(Scored(token_ids=list(p), logprobs=[None, *own], top=[[], *(t[:k] for t in tops[:-1])],
                          next_token=tops[-1][0], next_top=tops[-1][:k]))
    return out
