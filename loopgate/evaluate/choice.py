"""Multiple choice: the summed log-probability of each choice given its prompt, the choices of a prompt sharing one
forward row."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from loopgate.errors import DataError
from loopgate.evaluate.sizing import (
    EngineConfig,
    ProgressFn,
    auto_batch_size,
    length_sorted_batches,
    model_config,
    pad_id,
    prompt_room,
)


@dataclass(frozen=True)
class ChoiceScores:
    """Summed log-probability of each choice given the prompt; ``latency_ms`` amortised as for generation."""

    loglikelihoods: list[float]
    latency_ms: float

    @property
    def best(self) -> int:
        """Index of the most likely choice (the first one on a tie)."""
        return max(range(len(self.loglikelihoods)), key=lambda k: self.loglikelihoods[k])


def _choice_pieces(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], choices: Sequence[Sequence[str]]
                   ) -> list[tuple[list[int], list[list[int]]]]:
    """Per prompt: (context ids, [continuation ids per choice]), split the way lm-eval does.

    The whole ``prompt + choice`` is encoded and cut at the context's length, so a tokenizer that merges
    across the boundary still scores the choice's own tokens. Encoding is batched: one call per kind.
    """
    ctxs: list[list[int]] = tokenizer(list(prompts))["input_ids"]
    flat = [p + c for p, cs in zip(prompts, choices, strict=True) for c in cs]
    wholes: list[list[int]] = tokenizer(flat)["input_ids"] if flat else []
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    out: list[tuple[list[int], list[list[int]]]] = []
    k = 0
    for ctx, cs in zip(ctxs, choices, strict=True):
        conts: list[list[int]] = []
        for c in cs:
            whole = wholes[k]
            k += 1
            if whole[: len(ctx)] == ctx and len(whole) > len(ctx):
                cont = whole[len(ctx):]
            else:  # the choice merged with the prompt's last token: score it as its own tokens
                cont = tokenizer(c, add_special_tokens=False)["input_ids"]
            if not cont:
                raise DataError(f"choice {c!r} encodes to no tokens; choices must be non-empty text")
            conts.append(cont)
        # the first choice token needs something to be predicted from
        out.append((ctx or [int(start if start is not None else 0)], conts))
    return out


def _fit_choices(model: Any, pieces: list[tuple[list[int], list[list[int]]]], truncated: list[int] | None
                 ) -> list[tuple[list[int], list[list[int]]]]:
    """Each prompt cut from the left so that it and its longest choice fit the model's context (the last choice token
    is predicted, never fed: a choice of n tokens takes n - 1 positions after the prompt)."""
    out = []
    for i, (ctx, conts) in enumerate(pieces):
        room = prompt_room(model, max(len(c) for c in conts) - 1)
        if room is not None and len(ctx) > room:
            ctx = ctx[-room:]
            if truncated is not None:
                truncated.append(i)
        out.append((ctx, conts))
    return out


def _shares_prompts(model: Any) -> bool:
    # the packed layout needs a custom 4D attention mask; eager and sdpa attention honour one, while
    # flash-attention kernels would silently ignore it and score garbage
    return getattr(model_config(model), "_attn_implementation", "eager") in ("eager", "sdpa")


def _packed_batch(rows: Sequence[tuple[list[int], list[list[int]]]], pad: int
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[list[list[int]]]]:
    """One row per prompt: ``prompt, choice₁[:-1], choice₂[:-1], …`` with a mask that lets each choice see
    the prompt and itself only, and positions that restart after the prompt for every choice.

    Returns ids, a boolean 4D mask, position ids and, per row and choice, the positions whose logits
    predict that choice's tokens.
    """
    layouts = []
    for ctx, conts in rows:
        tokens, positions, owner = list(ctx), list(range(len(ctx))), [-1] * len(ctx)
        predictors = []
        for k, cont in enumerate(conts):
            # the last prompt token predicts a choice's first token; each choice token predicts the next
            predictors.append([len(ctx) - 1] + list(range(len(tokens), len(tokens) + len(cont) - 1)))
            tokens += cont[:-1]
            positions += range(len(ctx), len(ctx) + len(cont) - 1)
            owner += [k] * (len(cont) - 1)
        layouts.append((tokens, positions, owner, predictors))
    width = max(len(t) for t, _, _, _ in layouts)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    own = torch.full((len(rows), width), -2, dtype=torch.long)  # -2: padding, -1: prompt, k: choice k
    for r, (tokens, positions, owner, _) in enumerate(layouts):
        ids[r, : len(tokens)] = torch.tensor(tokens)
        pos[r, : len(tokens)] = torch.tensor(positions)
        own[r, : len(tokens)] = torch.tensor(owner)
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    query_owner, key_owner = own[:, :, None], own[:, None, :]
    allowed = causal & (key_owner != -2) & ((key_owner == -1) | (key_owner == query_owner))
    allowed |= torch.eye(width, dtype=torch.bool)  # padding rows attend to themselves: no all-masked softmax
    return ids, allowed[:, None], pos, [lay[3] for lay in layouts]


@torch.inference_mode()
def choice_loglikelihoods(model: Any, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str],
                          choices: Sequence[Sequence[str]], *, config: EngineConfig | None = None,
                          on_progress: ProgressFn | None = None, batch_ms: list[float] | None = None,
                          truncated: list[int] | None = None) -> list[ChoiceScores]:
    """Sum of log-probabilities of each choice's tokens given its prompt, one forward pass per batch.

    The choices of a prompt share one row: the prompt is computed once and every choice attends to it
    (see ``_packed_batch``), so a batch costs prompt + choices tokens rather than choices × (prompt +
    choice). A batch's size counts choices, as if each were its own sequence, and a prompt is never
    split across batches. A prompt that leaves too little of the model's context for its longest choice keeps its
    last tokens; ``truncated`` collects the indices of those prompts. ``batch_ms`` collects each batch's wall time.
    """
    config = config or EngineConfig()
    pieces = _fit_choices(model, _choice_pieces(tokenizer, prompts, choices), truncated)
    shared = _shares_prompts(model)
    lengths = [len(ctx) + sum(len(c) - 1 for c in conts) if shared else max(len(ctx) + len(c) - 1 for c in conts)
               for ctx, conts in pieces]
    weights = [len(cs) for cs in choices]

    def size_for(longest: int) -> int:
        if config.batch_size is not None:
            return config.batch_size
        return auto_batch_size(model, longest, logits_positions=longest, memory_budget_mb=config.memory_budget_mb,
                               max_batch_size=config.max_batch_size)

    pad = pad_id(tokenizer)
    device = next(model.parameters()).device
    results: list[ChoiceScores | None] = [None] * len(prompts)
    for batch in length_sorted_batches(lengths, size_for, weights):
        t0 = time.perf_counter()
        rows: list[int] = []  # forward row of each (prompt, choice)
        preds: list[list[int]] = []  # positions predicting each (prompt, choice)'s tokens
        if shared:
            ids, mask, pos, predictors = _packed_batch([pieces[i] for i in batch], pad)
            for r, per_choice in enumerate(predictors):
                rows += [r] * len(per_choice)
                preds += per_choice
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                           position_ids=pos.to(device)).logits
        else:
            seqs = [(ctx, cont) for i in batch for cont in pieces[i][1] for ctx in [pieces[i][0]]]
            width = max(len(ctx) + len(cont) - 1 for ctx, cont in seqs)
            ids = torch.full((len(seqs), width), pad, dtype=torch.long)
            flat_mask = torch.zeros((len(seqs), width), dtype=torch.long)
            for s, (ctx, cont) in enumerate(seqs):  # right padding: positions start at 0 in every row
                tokens = (ctx + cont)[:-1]
                ids[s, : len(tokens)] = torch.tensor(tokens)
                flat_mask[s, : len(tokens)] = 1
                rows.append(s)
                preds.append(list(range(len(ctx) - 1, len(ctx) - 1 + len(cont))))
            logits = model(input_ids=ids.to(device), attention_mask=flat_mask.to(device)).logits
        sums = _choice_sums(logits, rows, preds, [cont for i in batch for cont in pieces[i][1]])
        wall_ms = (time.perf_counter() - t0) * 1000
        k = 0
        for i in batch:
            n = len(pieces[i][1])
            results[i] = ChoiceScores(sums[k: k + n], wall_ms / len(batch))
            k += n
        if batch_ms is not None:
            batch_ms.append(wall_ms)
        if on_progress is not None:
            on_progress(len(batch))
    return [r for r in results if r is not None]




def _choice_sums(logits: torch.Tensor, rows: list[int], preds: list[list[int]], targets: list[list[int]]
                 ) -> list[float]:
    """Per (prompt, choice): the summed log-probability of its tokens, read at the positions that predict them."""
    seq_idx = [r for r, p in zip(rows, preds, strict=True) for _ in p]
    pos_idx = [t for p in preds for t in p]
    flat_targets = [tok for cont in targets for tok in cont]
    # log_softmax only at the positions that score a choice token, not the whole [rows, width, vocab]
    picked = logits[torch.tensor(seq_idx), torch.tensor(pos_idx)].float().log_softmax(-1)
    token_lp = picked[torch.arange(len(flat_targets)), torch.tensor(flat_targets)].tolist()
    sums: list[float] = []
    k = 0
    for cont in targets:
        sums.append(sum(token_lp[k: k + len(cont)]))
        k += len(cont)
    return sums
