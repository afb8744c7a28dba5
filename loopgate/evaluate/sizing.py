"""How big a batch may be and how much of a prompt fits: the engine's settings, the model's context, memory
estimates per sequence, and batches of prompts of similar length."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from loopgate.errors import DataError
from loopgate.models.io import context_length

DEFAULT_MAX_BATCH_SIZE = 64
DEFAULT_MEMORY_BUDGET_MB = 1024.0
# on a GPU the budget is the free device memory (this share of it) and batches of hundreds of short sequences are
# what makes a GPU fast (FIELD-NOTES: 64 → 512 rows took a 0.3 B model from 64 to 494 items/s on an H100)
DEFAULT_MAX_GPU_BATCH_SIZE = 1024
GPU_MEMORY_SHARE = 0.8

ProgressFn = Callable[[int], None]


@dataclass(frozen=True)
class EngineConfig:
    """Inference settings; none of them changes a result, only how fast it comes (so none is in the cache key)."""

    batch_size: int | None = None  # None: chosen from memory_budget_mb (on a GPU: from its free memory)
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB  # for activations, KV cache and logits (not weights)
    threads: int | None = None  # None: LOOPGATE_THREADS, default 1
    max_gpu_batch_size: int = DEFAULT_MAX_GPU_BATCH_SIZE



def model_config(model: Any) -> Any:
    # a PeftModel forwards attribute access to its base, but be explicit for wrappers that do not
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.config


def prompt_room(model: Any, reserve: int) -> int | None:
    """How many prompt tokens fit the model's context with ``reserve`` positions kept for what follows (the new
    tokens, or a choice); None when the model does not say how many positions it takes.

    A GPT-2-family model indexes a table of ``n_positions`` learned positions: one more is an ``IndexError``
    inside the embedding. Models with rotary positions run past theirs, but on positions they never saw.
    """
    context = context_length(model_config(model))
    if context is None:
        return None
    if context - reserve < 1:
        raise DataError(f"{reserve} tokens (max_new_tokens, or the longest choice) leave no room for a prompt in the "
                        f"model's context of {context} positions; lower the suite's (or its app's) max_new_tokens, "
                        "or shorten the choices")
    return context - reserve


def keep_end(encoded: list[list[int]], room: int | None, truncated: list[int] | None) -> list[list[int]]:
    """Each prompt cut to its last ``room`` tokens (the end is what the answer follows); cut indices go to
    ``truncated``."""
    if room is None:
        return encoded
    out = []
    for i, ids in enumerate(encoded):
        if len(ids) > room:
            ids = ids[-room:]
            if truncated is not None:
                truncated.append(i)
        out.append(ids)
    return out


def model_profile(model: torch.nn.Module) -> dict[str, float]:
    """Static cost figures of a model: parameter count and the memory its weights take."""
    params = sum(p.numel() for p in model.parameters())
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    weight_bytes += sum(b.numel() * b.element_size() for b in model.buffers())
    return {"params": float(params), "weights_mb": weight_bytes / 2**20}


def auto_batch_size(model: torch.nn.Module, seq_len: int, *, logits_positions: int = 1,
                    memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
                    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE) -> int:
    """Largest batch whose KV cache, activations and logits fit the memory budget (a deliberate over-estimate).

    ``logits_positions`` is how many positions per sequence keep full-vocabulary logits: 1 for generation,
    the whole sequence for log-likelihood scoring.
    """
    cfg = model_config(model)
    elem = next(model.parameters()).element_size()
    hidden = int(getattr(cfg, "hidden_size", 1024))
    layers = int(getattr(cfg, "num_hidden_layers", 12))
    heads = int(getattr(cfg, "num_attention_heads", 8))
    kv_heads = int(getattr(cfg, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(cfg, "head_dim", None) or hidden // heads)
    inter = int(getattr(cfg, "intermediate_size", 4 * hidden))
    vocab = int(getattr(cfg, "vocab_size", 32000))
    kv = 2 * layers * kv_heads * head_dim * seq_len * elem
    # the live activations of one layer at a time: hidden states, attention scores, the MLP's widest tensor
    act = seq_len * (4 * hidden + 2 * inter) * elem + heads * seq_len * seq_len * elem
    # logits are float32 and log_softmax makes a second copy
    logits = 2 * logits_positions * vocab * 4
    per_seq = kv + act + logits
    fit = int(memory_budget_mb * 2**20 // max(per_seq, 1))
    return max(1, min(max_batch_size, fit))


def gpu_budget_mb(device: torch.device) -> float:
    """What a GPU's batches may use: a share of its free memory now (weights already loaded are not free)."""
    free, _ = torch.cuda.mem_get_info(device)
    return GPU_MEMORY_SHARE * free / 2**20


def pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return int(pad if pad is not None else 0)


def length_sorted_batches(lengths: Sequence[int], size_for: Callable[[int], int],
                           weights: Sequence[int] | None = None) -> list[list[int]]:
    """Indices grouped into batches, longest first; ``size_for(longest)`` caps a batch's total weight."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    cur: list[int] = []
    cur_weight = 0
    cap = 0
    for i in order:
        w = 1 if weights is None else weights[i]
        if not cur:
            cap = size_for(lengths[i])  # the first row is the longest: it sets the memory per row
        elif cur_weight + w > cap:
            batches.append(cur)
            cur, cur_weight = [], 0
            cap = size_for(lengths[i])
        cur.append(i)
        cur_weight += w
    if cur:
        batches.append(cur)
    return batches

