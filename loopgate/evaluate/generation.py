"""Generation: greedy continuations of prompts in length-sorted batches, stopped on device at a stop string."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase, StoppingCriteria, StoppingCriteriaList, StopStringCriteria

from loopgate.evaluate.sizing import (
    EngineConfig,
    ProgressFn,
    auto_batch_size,
    gpu_budget_mb,
    keep_end,
    length_sorted_batches,
    pad_id,
    prompt_room,
)


@dataclass(frozen=True)
class Generation:
    """One generated continuation; ``latency_ms`` is its batch's wall time ÷ rows in the batch."""

    text: str
    output_tokens: int
    latency_ms: float



class _StopOnStrings(StoppingCriteria):
    """Marks a row finished once its generated text contains a stop string — on the device, with no host sync.

    Single-character stops (the usual ``"\\n"``) are one ``isin`` of the newest token against the ids whose text
    contains one (a stop character never spans tokens); longer stops go through transformers'
    ``StopStringCriteria``, which matches token ids against the stop strings' possible splits, overhangs on both
    ends included. Either way nothing is decoded on the host while generating: a GPU never waits for the CPU.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, prompt_len: int, stops: Sequence[str],
                 device: torch.device) -> None:
        stops = [s for s in stops if s]
        self.prompt_len = prompt_len
        chars = tuple(sorted({s for s in stops if len(s) == 1}))
        self.ids = _ids_containing(tokenizer, chars).to(device) if chars else None
        longer = sorted({s for s in stops if len(s) > 1 and not any(c in s for c in chars)})
        self.strings = StopStringCriteria(tokenizer, longer) if longer else None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if input_ids.shape[1] <= self.prompt_len:
            return done  # type: ignore[return-value]
        if self.ids is not None:
            done |= torch.isin(input_ids[:, -1], self.ids)
        if self.strings is not None:  # the generated tokens only: a stop straddling the prompt's end is no stop
            done |= self.strings(input_ids[:, self.prompt_len:], scores)
        return done  # type: ignore[return-value]


def _ids_containing(tokenizer: PreTrainedTokenizerBase, chars: tuple[str, ...]) -> torch.Tensor:
    """The ids of every token whose text contains one of ``chars`` (computed once per tokenizer and stops, kept
    on the tokenizer object itself so that it goes when the tokenizer goes)."""
    cache: dict[tuple[int, tuple[str, ...]], torch.Tensor] = tokenizer.__dict__.setdefault("_loopgate_stop_ids", {})
    key = (len(tokenizer), chars)
    if key not in cache:
        texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))], skip_special_tokens=True)
        cache[key] = torch.tensor([i for i, t in enumerate(texts) if any(c in t for c in chars)] or [-1],
                                  dtype=torch.long)
    return cache[key]


def _truncate(text: str, stops: Sequence[str]) -> str:
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=len(text))
    return text[:cut]


@torch.inference_mode()
def generate(model: Any, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], *, max_new_tokens: int,
             stop: Sequence[str] = ("\n",), config: EngineConfig | None = None,
             on_progress: ProgressFn | None = None, batch_ms: list[float] | None = None,
             truncated: list[int] | None = None) -> list[Generation]:
    """Greedy continuations of ``prompts`` (in order), cut at the first stop string.

    A prompt longer than the model's context less ``max_new_tokens`` keeps its last tokens (:func:`prompt_room`);
    ``truncated`` collects the indices of those prompts. ``batch_ms`` collects each batch's wall time, for the
    batch-latency figures.
    """
    config = config or EngineConfig()
    encoded: list[list[int]] = tokenizer(list(prompts))["input_ids"] if prompts else []
    if encoded:
        encoded = keep_end(encoded, prompt_room(model, max_new_tokens), truncated)
    lengths = [len(e) for e in encoded]
    device = next(model.parameters()).device
    budget, cap = config.memory_budget_mb, config.max_batch_size
    if device.type == "cuda":
        budget, cap = gpu_budget_mb(device), config.max_gpu_batch_size

    def size_for(longest: int) -> int:
        if config.batch_size is not None:
            return config.batch_size
        return auto_batch_size(model, longest + max_new_tokens, memory_budget_mb=budget, max_batch_size=cap)

    pad = pad_id(tokenizer)
    eos = tokenizer.eos_token_id
    # every id that ends a sequence: the tokenizer's eos and the generation config's (it may be a list)
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    eos_ids = {i for i in ([eos] + (gen_eos if isinstance(gen_eos, list) else [gen_eos])) if i is not None}
    results: list[Generation | None] = [None] * len(prompts)
    pending = length_sorted_batches(lengths, size_for)
    while pending:
        batch = pending.pop(0)
        t0 = time.perf_counter()
        width = max(lengths[i] for i in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, i in enumerate(batch):  # left padding: the last prompt token sits at the same column in every row
            ids[r, width - lengths[i]:] = torch.tensor(encoded[i])
            mask[r, width - lengths[i]:] = 1
        criteria = _StopOnStrings(tokenizer, width, stop, device)
        try:
            out = model.generate(
                input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                do_sample=False, num_beams=1, pad_token_id=pad, eos_token_id=sorted(eos_ids) or None,
                stopping_criteria=StoppingCriteriaList([criteria]), temperature=None, top_p=None, top_k=None,
            )
        except torch.cuda.OutOfMemoryError:
            if len(batch) == 1:
                raise
            torch.cuda.empty_cache()  # the estimate was too generous: the same rows in two halves
            pending[:0] = [batch[: len(batch) // 2], batch[len(batch) // 2:]]
            continue
        texts, counts = _decode_rows(tokenizer, out[:, width:].tolist(), eos_ids, pad)
        wall_ms = (time.perf_counter() - t0) * 1000
        for r, i in enumerate(batch):
            results[i] = Generation(_truncate(texts[r], stop), counts[r], wall_ms / len(batch))
        if batch_ms is not None:
            batch_ms.append(wall_ms)
        if on_progress is not None:
            on_progress(len(batch))
    return [g for g in results if g is not None]




def _decode_rows(tokenizer: PreTrainedTokenizerBase, new: list[list[int]], eos_ids: set[int], pad: int
                 ) -> tuple[list[str], list[int]]:
    """Each row's generated text and token count: up to and including eos, up to (not including) padding."""
    texts: list[str] = []
    counts: list[int] = []
    for row in new:
        n = 0
        for tok in row:  # a finished row is filled with pad; eos counts as generated, pad does not
            if tok in eos_ids:
                n += 1
                break
            if tok == pad:
                break
            n += 1
        counts.append(n)
        texts.append(str(tokenizer.decode(row[:n], skip_special_tokens=True)))
    return texts, counts
