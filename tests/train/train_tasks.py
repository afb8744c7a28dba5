"""Synthetic string tasks the tiny model learns in seconds, and an exact-match greedy accuracy.

A = reverse a word, B = sort its letters, D = upper-case it. Words are random lower-case strings from a seeded
RNG; held-out words never appear in training data.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from seed import SEED

from loopgate.models import load_model
from loopgate.spec import LoraSettings, Recipe, ReplaySettings

TASKS: dict[str, tuple[str, Callable[[str], str]]] = {
    "A": ("R ", lambda w: w[::-1]),
    "B": ("S ", lambda w: "".join(sorted(w))),
    "D": ("U ", lambda w: w.upper()),
}


# Recipes shared by fixtures and tests (the transfer tests re-run the child's recipe). Step counts are set so that
# every outcome a test asserts lands far from its threshold for seeds 0-5, not just for one seed on one machine:
# from a fresh init, reversal is learnt abruptly somewhere between 200 and 600 steps depending on the seed, and
# LoRA (which cannot touch embeddings or the head) needs many more steps than a full fine-tune.
SFT_A = Recipe(method="sft", steps=600, batch_size=32, lr=3e-3, warmup_steps=10, max_length=32, seed=SEED)
SFT_B = Recipe(method="sft", steps=300, batch_size=32, lr=3e-3, warmup_steps=10, max_length=32, seed=SEED)
SFT_B_REPLAY = SFT_B.model_copy(update={"replay": ReplaySettings(share=0.5)})
LORA_B = Recipe(method="lora", steps=500, batch_size=32, lr=3e-3, warmup_steps=10, max_length=32, seed=SEED,
                lora=LoraSettings(r=32, alpha=64))
# a gentle continued pre-training: the warm-up keeps Adam's first steps from knocking reversal over (without it,
# 60 steps at 3e-4 dropped one seed's reversal to 0.75), and the small drift keeps the diff vector useful
UPGRADE = Recipe(method="pretrain", steps=150, batch_size=32, lr=2e-4, warmup_steps=50, max_length=32, seed=SEED)


def words(n: int, seed: int, exclude: set[str] | frozenset[str] = frozenset()) -> list[str]:
    rng = random.Random(seed)
    out: list[str] = []
    seen = set(exclude)
    while len(out) < n:
        w = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 6)))
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


HELD_OUT = words(100, seed=999)
TRAIN = words(1500, seed=1, exclude=set(HELD_OUT))


def prompt(task: str, w: str) -> str:
    return f"{TASKS[task][0]}{w}="


def sft_rows(task: str, ws: Sequence[str]) -> list[dict[str, str]]:
    return [{"prompt": prompt(task, w), "completion": TASKS[task][1](w)} for w in ws]


def text_rows(tasks: str, ws: Sequence[str]) -> list[dict[str, str]]:
    return [{"text": prompt(t, w) + TASKS[t][1](w)} for w in ws for t in tasks]


def write_jsonl(path: Path, rows: Sequence[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@torch.no_grad()
def accuracy(model_dir: Path, task: str, ws: Sequence[str] = HELD_OUT, adapter: Path | None = None) -> float:
    """Exact match of greedy completions on held-out words (batched, left-padded)."""
    loaded = load_model(model_dir, adapter)
    tok = loaded.tokenizer
    prompts = [prompt(task, w) for w in ws]
    enc = tok(prompts, return_tensors="pt", padding=True)
    out = loaded.model.generate(**enc, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id,
                                eos_token_id=tok.eos_token_id)
    texts = tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return sum(t == TASKS[task][1](w) for t, w in zip(texts, ws, strict=True)) / len(ws)


@torch.no_grad()
def completion_logprob(model_dir: Path, prompts: Sequence[str], completions: Sequence[str],
                       adapter: Path | None = None) -> list[float]:
    """Sum of log p(completion + eos | prompt) per row, one right-padded forward pass."""
    loaded = load_model(model_dir, adapter)
    tok = loaded.tokenizer
    seqs, starts = [], []
    for p, c in zip(prompts, completions, strict=True):
        p_ids = tok(p)["input_ids"]
        seqs.append(p_ids + tok(c, add_special_tokens=False)["input_ids"] + [tok.eos_token_id])
        starts.append(len(p_ids))
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), tok.pad_token_id)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, : len(s)], mask[i, : len(s)] = torch.tensor(s), 1
    logp = torch.log_softmax(loaded.model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
    out = []
    for i, s in enumerate(seqs):
        pos = torch.arange(starts[i] - 1, len(s) - 1)
        out.append(float(logp[i, pos, torch.tensor(s[starts[i]:])].sum()))
    return out


def answer_nll(model_dir: Path, task: str, ws: Sequence[str] = HELD_OUT, adapter: Path | None = None) -> float:
    """Mean negative log-likelihood of the correct answers on held-out words (a smooth forgetting measure)."""
    lps = completion_logprob(model_dir, [prompt(task, w) for w in ws], [TASKS[task][1](w) for w in ws], adapter)
    return -sum(lps) / len(lps)
