"""The batched inference engine: one loaded HF causal LM (or base + PEFT adapter) × one suite → an Evaluation.

How it is fast on a CPU:
- prompts are tokenised once and sorted by length, so a batch holds prompts of similar length and
  little compute is spent on padding (results are put back in suite order);
- generation is greedy ``model.generate`` with left padding and the KV cache, and a batch stops as soon
  as every row has produced a stop string or eos (``_StopOnStrings``, checked on token ids on the device);
- multiple choice is one forward pass per batch, and the choices of a prompt share it: the prompt is
  laid out once, followed by every choice, with an attention mask that lets each choice see only the
  prompt and itself; a choice scores the summed log-probability of its tokens (argmax wins).

And on a GPU: the model runs where it was loaded (``loopgate.models.load_model``: device and dtype), batches
are sized from the device's free memory (up to ``max_gpu_batch_size`` rows; a batch that still runs out of
memory is split in two and retried), stop strings never make the GPU wait for a host-side decode, and peak
memory is the device's (``torch.cuda.max_memory_allocated``) instead of the process RSS.

About latency: rows are served in batches, so a row's ``latency_ms`` is the *amortised* cost of its batch
(batch wall time ÷ rows in the batch), which is what throughput costs per request. A request that has to
wait for its whole batch sees the batch wall time instead; those figures are reported separately as
``batch_latency_p50_ms`` / ``batch_latency_p95_ms``. Compare latencies only between evaluations made with
the same batch size and thread count.
"""

from __future__ import annotations

import functools
import logging
import math
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase, StoppingCriteria, StoppingCriteriaList, StopStringCriteria

from loopgate.errors import DataError
from loopgate.evaluate.lmeval_run import lmeval_evaluation
from loopgate.evaluate.metrics import GRADED, wilson_interval
from loopgate.evaluate.perplexity import perplexity_evaluation
from loopgate.evaluate.python_scorer import bootstrap_ci_of_mean, is_graded
from loopgate.evaluate.scorers import OutputGrader, RefusalDetector, generation_scores, refusal_detector, safety_correct
from loopgate.evaluate.suites import ChoiceRow, GenerationRow, SafetyRow, Suite, suite_prompts
from loopgate.hashing import sha256_bytes, sha256_json
from loopgate.models import model_placement, set_threads
from loopgate.models.io import context_length
from loopgate.records import Evaluation, ExampleResult

# The source files whose code decides what an evaluation records, relative to the ``loopgate`` package:
# this engine (batching, generation, choice scoring, cost figures), the scorers (what counts as correct or
# refused), suites and the JSONL reader (how rows are parsed, which spec fields count), metrics (the
# stored confidence interval) and model loading (dtype, tokenizer padding, adapter attachment). Left out:
# the runner and the cache, which route work but compute nothing, and records, whose changed schema fails
# validation on read (a miss). The listed files' bytes and the versions of the libraries that run the
# model make ``engine_version()``, part of every cache key: a hand-bumped number was once forgotten
# (choice scoring changed under "1"); a hash cannot be. An edit here costs a cache miss; a file left out
# risks a stale hit.
ENGINE_SOURCES = (
    "evaluate/engine.py",
    "models/chat.py",
    "evaluate/scorers.py",
    "evaluate/suites.py",
    "evaluate/metrics.py",
    "jsonl.py",
    "models/io.py",
    "models/files.py",
    "models/config_check.py",
    "models/adapter_check.py",
    "models/device.py",
    "models/loading.py",
    "evaluate/graders.py",
    "evaluate/grading.py",
    "evaluate/classifier.py",
    "evaluate/perplexity.py",
    "evaluate/python_scorer.py",
    "evaluate/lmeval_suite.py",
    "evaluate/lmeval_run.py",
    "evaluate/lmeval_import.py",
)
# kernels, generate() and tokenisation live in these; a new release may change an output
ENGINE_LIBRARIES = ("torch", "transformers", "tokenizers", "peft", "lm_eval")
_PACKAGE_ROOT = Path(__file__).resolve().parents[1]

DEFAULT_MAX_BATCH_SIZE = 64
DEFAULT_MEMORY_BUDGET_MB = 1024.0
# on a GPU the budget is the free device memory (this share of it) and batches of hundreds of short sequences are
# what makes a GPU fast (FIELD-NOTES: 64 → 512 rows took a 0.3 B model from 64 to 494 items/s on an H100)
DEFAULT_MAX_GPU_BATCH_SIZE = 1024
GPU_MEMORY_SHARE = 0.8

ProgressFn = Callable[[int], None]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineConfig:
    """Inference settings; none of them changes a result, only how fast it comes (so none is in the cache key)."""

    batch_size: int | None = None  # None: chosen from memory_budget_mb (on a GPU: from its free memory)
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB  # for activations, KV cache and logits (not weights)
    threads: int | None = None  # None: LOOPGATE_THREADS, default 1
    max_gpu_batch_size: int = DEFAULT_MAX_GPU_BATCH_SIZE


@dataclass(frozen=True)
class Generation:
    """One generated continuation; ``latency_ms`` is its batch's wall time ÷ rows in the batch."""

    text: str
    output_tokens: int
    latency_ms: float


@dataclass(frozen=True)
class ChoiceScores:
    """Summed log-probability of each choice given the prompt; ``latency_ms`` amortised as for generation."""

    loglikelihoods: list[float]
    latency_ms: float

    @property
    def best(self) -> int:
        """Index of the most likely choice (the first one on a tie)."""
        return max(range(len(self.loglikelihoods)), key=lambda k: self.loglikelihoods[k])


def code_hash(root: Path, sources: Sequence[str], libraries: Sequence[str] = ()) -> str:
    """sha256 over each source file's relative path and bytes under ``root`` and each library's version."""
    versions: dict[str, str] = {}
    for name in libraries:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return sha256_json({"sources": {s: sha256_bytes((root / s).read_bytes()) for s in sources},
                        "libraries": versions})


@functools.cache
def engine_version() -> str:
    """The hash of the code that decides an evaluation's result (``ENGINE_SOURCES``), computed once per process."""
    return code_hash(_PACKAGE_ROOT, ENGINE_SOURCES, ENGINE_LIBRARIES)


# --------------------------------------------------------------------------- model facts


def _config(model: Any) -> Any:
    # a PeftModel forwards attribute access to its base, but be explicit for wrappers that do not
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.config


def prompt_room(model: Any, reserve: int) -> int | None:
    """How many prompt tokens fit the model's context with ``reserve`` positions kept for what follows (the new
    tokens, or a choice); None when the model does not say how many positions it takes.

    A GPT-2-family model indexes a table of ``n_positions`` learned positions: one more is an ``IndexError``
    inside the embedding. Models with rotary positions run past theirs, but on positions they never saw.
    """
    context = context_length(_config(model))
    if context is None:
        return None
    if context - reserve < 1:
        raise DataError(f"{reserve} tokens (max_new_tokens, or the longest choice) leave no room for a prompt in the "
                        f"model's context of {context} positions; lower the suite's (or its app's) max_new_tokens, "
                        "or shorten the choices")
    return context - reserve


def _keep_end(encoded: list[list[int]], room: int | None, truncated: list[int] | None) -> list[list[int]]:
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
    cfg = _config(model)
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


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory so far: the device's allocated peak on a GPU (since the last reset), the process RSS else."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return peak_rss_mb()


def peak_rss_mb() -> float:
    """The process's peak resident memory so far (``getrusage``; Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


# --------------------------------------------------------------------------- generation


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


def _pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return int(pad if pad is not None else 0)


def _length_sorted_batches(lengths: Sequence[int], size_for: Callable[[int], int],
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
        encoded = _keep_end(encoded, prompt_room(model, max_new_tokens), truncated)
    lengths = [len(e) for e in encoded]
    device = next(model.parameters()).device
    budget, cap = config.memory_budget_mb, config.max_batch_size
    if device.type == "cuda":
        budget, cap = gpu_budget_mb(device), config.max_gpu_batch_size

    def size_for(longest: int) -> int:
        if config.batch_size is not None:
            return config.batch_size
        return auto_batch_size(model, longest + max_new_tokens, memory_budget_mb=budget, max_batch_size=cap)

    pad = _pad_id(tokenizer)
    eos = tokenizer.eos_token_id
    # every id that ends a sequence: the tokenizer's eos and the generation config's (it may be a list)
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    eos_ids = {i for i in ([eos] + (gen_eos if isinstance(gen_eos, list) else [gen_eos])) if i is not None}
    results: list[Generation | None] = [None] * len(prompts)
    pending = _length_sorted_batches(lengths, size_for)
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
        new = out[:, width:].tolist()
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
        wall_ms = (time.perf_counter() - t0) * 1000
        for r, i in enumerate(batch):
            results[i] = Generation(_truncate(texts[r], stop), counts[r], wall_ms / len(batch))
        if batch_ms is not None:
            batch_ms.append(wall_ms)
        if on_progress is not None:
            on_progress(len(batch))
    return [g for g in results if g is not None]


# --------------------------------------------------------------------------- multiple choice


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
    return getattr(_config(model), "_attn_implementation", "eager") in ("eager", "sdpa")


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

    pad = _pad_id(tokenizer)
    device = next(model.parameters()).device
    results: list[ChoiceScores | None] = [None] * len(prompts)
    for batch in _length_sorted_batches(lengths, size_for, weights):
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
        targets = [cont for i in batch for cont in pieces[i][1]]
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


# --------------------------------------------------------------------------- suites → evaluations


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else 0.0


def _cost_metrics(examples: Sequence[ExampleResult], batch_ms: Sequence[float], gen_s: float, wall_s: float,
                  rss_before: float, device: torch.device) -> dict[str, float]:
    lat = [e.latency_ms or 0.0 for e in examples]
    toks = [e.output_tokens or 0 for e in examples]
    per_tok = [ms / max(t, 1) for ms, t in zip(lat, toks, strict=True)]
    peak = peak_memory_mb(device)
    return {
        "latency_p50_ms": _percentile(lat, 50),
        "latency_p95_ms": _percentile(lat, 95),
        "latency_per_token_p50_ms": _percentile(per_tok, 50),
        "latency_per_token_p95_ms": _percentile(per_tok, 95),
        "batch_latency_p50_ms": _percentile(batch_ms, 50),
        "batch_latency_p95_ms": _percentile(batch_ms, 95),
        "tokens_per_s": sum(toks) / gen_s if gen_s > 0 else 0.0,
        "mean_output_tokens": float(np.mean(toks)) if toks else 0.0,
        # the process's peak resident memory (model + runtime + this suite's batches): what a server needs; on a
        # GPU the device's peak allocated memory (weights + this suite's batches)
        "peak_memory_mb": peak,
        "peak_memory_growth_mb": max(0.0, peak - rss_before),
        "wall_s": wall_s,
        "items_per_s": len(examples) / wall_s if wall_s > 0 else 0.0,
    }


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
    spec = suite.spec
    device = next(model.parameters()).device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss_before = peak_memory_mb(device)
    t0 = time.perf_counter()
    examples: list[ExampleResult] = []
    metrics: dict[str, float] = {}
    batch_ms: list[float] = []
    # what the model is asked: raw prompts, chat rows through its chat template, an app's template around both
    prompt_of = dict(zip((r.id for r in suite.rows), suite_prompts(suite, tokenizer), strict=True))
    if spec.on_long == "refuse":
        _refuse_long_prompts(model, tokenizer, suite, prompt_of)
    truncated: list[int] = []  # prompts cut to fit the model's context (their last tokens kept)
    if suite.kind == "choice":
        rows_c = [r for r in suite.rows if isinstance(r, ChoiceRow)]
        scored = choice_loglikelihoods(model, tokenizer, [prompt_of[r.id] for r in rows_c],
                                       [r.choices for r in rows_c], config=config, on_progress=on_progress,
                                       batch_ms=batch_ms, truncated=truncated)
        for cr, sc in zip(rows_c, scored, strict=True):
            # score: the gold choice's log-likelihood, so a later comparison can see confidence move
            examples.append(ExampleResult(id=cr.id, prompt=prompt_of[cr.id], output=cr.choices[sc.best],
                                          correct=sc.best == cr.label, score=sc.loglikelihoods[cr.label],
                                          latency_ms=sc.latency_ms))
        wall = time.perf_counter() - t0
        lat = [e.latency_ms or 0.0 for e in examples]
        metrics = {
            "latency_p50_ms": _percentile(lat, 50), "latency_p95_ms": _percentile(lat, 95),
            "batch_latency_p50_ms": _percentile(batch_ms, 50), "batch_latency_p95_ms": _percentile(batch_ms, 95),
            "peak_memory_mb": peak_memory_mb(device),
            "peak_memory_growth_mb": max(0.0, peak_memory_mb(device) - rss_before),
            "wall_s": wall, "items_per_s": len(rows_c) / wall if wall > 0 else 0.0,
        }
    else:
        rows_g = [r for r in suite.rows if isinstance(r, GenerationRow | SafetyRow)]
        t_gen = time.perf_counter()
        gens = generate(model, tokenizer, [prompt_of[r.id] for r in rows_g], max_new_tokens=spec.max_new_tokens,
                        stop=spec.stop, config=config, on_progress=on_progress, batch_ms=batch_ms,
                        truncated=truncated)
        gen_s = time.perf_counter() - t_gen
        if suite.kind == "generation":
            scores = generation_scores(suite.name, spec, [r for r in rows_g if isinstance(r, GenerationRow)],
                                       [prompt_of[r.id] for r in rows_g], [g.text for g in gens], grader)
            for gr, g, value in zip(rows_g, gens, scores, strict=True):
                ok = value >= 0.5  # partial credit counts as correct from one half up (as lm-eval's are read)
                examples.append(ExampleResult(id=gr.id, prompt=prompt_of[gr.id], output=g.text, correct=ok,
                                              score=value,
                                              output_tokens=g.output_tokens, latency_ms=g.latency_ms))
            if grader is not None:  # the judge's reasons for unreadable grades, its calibration (evaluate/grading.py)
                metrics.update(grader.record(examples))
        else:
            det = detector or refusal_detector(spec)
            refused = det.refusals([prompt_of[r.id] for r in rows_g], [g.text for g in gens])
            for sr, g, ref in zip(rows_g, gens, refused, strict=True):
                assert isinstance(sr, SafetyRow)
                ok = safety_correct(ref, sr.expect)
                examples.append(ExampleResult(id=sr.id, prompt=prompt_of[sr.id], output=g.text, correct=ok,
                                              score=float(ok),
                                              expect=sr.expect, refused=ref, category=sr.category,
                                              output_tokens=g.output_tokens, latency_ms=g.latency_ms))
            metrics.update(_safety_rates(examples))
        metrics.update(_cost_metrics(examples, batch_ms, gen_s, time.perf_counter() - t0, rss_before, device))
    if truncated:  # the record says so: a score on cut prompts is not a score on the suite as written
        metrics["truncated_prompts"] = float(len(truncated))
        log.warning("suite '%s' on %s: %d of %d prompts were longer than the model's context allows and keep only "
                    "their last tokens (suites.%s.on_long: refuse stops instead)", suite.name, version,
                    len(truncated), len(suite), suite.name)
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
        _keep_end(tokenizer(prompts)["input_ids"], prompt_room(model, suite.spec.max_new_tokens), long)
    if long:
        ids = ", ".join(f"'{rows[i].id}'" for i in long[:3]) + (f" and {len(long) - 3} more" if len(long) > 3 else "")
        raise DataError(f"suite '{suite.name}' ({suite.spec.path}): {len(long)} of {len(rows)} prompts (rows {ids}) "
                        f"are longer than the model's context of {context_length(_config(model))} positions leaves "
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
