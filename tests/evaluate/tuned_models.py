"""Tiny models trained further from the evaluation tests' model, for the suite tests that need a second version.

``further_trained`` continues training a saved model on (context, continuation) pairs — loss on the continuation
only — with a plain AdamW loop, and caches the result under ``tests/.cache`` by a hash of everything that builds it
(the base's folder name is its own content hash), so reruns skip training.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import torch

from loopgate.hashing import sha256_file, sha256_json
from loopgate.models import load_model, save_model, set_threads

CACHE = Path(__file__).resolve().parents[1] / ".cache"


def _train(base: Path, pairs: list[tuple[str, str]], steps: int, lr: float, batch: int, seed: int, out: Path) -> None:
    set_threads(1)
    loaded = load_model(base)
    model, tok = loaded.model, loaded.tokenizer
    rng = random.Random(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        chosen = [rng.choice(pairs) for _ in range(batch)]
        enc = tok([c + t for c, t in chosen], return_tensors="pt", padding=True, padding_side="right")
        labels = enc.input_ids.masked_fill(enc.attention_mask == 0, -100)
        for r, (c, _) in enumerate(chosen):
            labels[r, : len(tok(c)["input_ids"])] = -100  # the context is given, not learned
        loss = model(**enc, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    save_model(model, tok, out)


def further_trained(base: Path, name: str, pairs: list[tuple[str, str]], *, steps: int, lr: float, batch: int = 16,
                    seed: int = 0) -> Path:
    """``base`` trained ``steps`` more steps on ``pairs`` (cached on disk by content)."""
    key = sha256_json({"base": base.name, "pairs": pairs, "steps": steps, "lr": lr, "batch": batch, "seed": seed,
                       "here": sha256_file(Path(__file__))})
    target = CACHE / f"{name}-{key[:16]}"
    if not (target / "model.safetensors").exists():
        tmp = CACHE / f".tmp-{name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        _train(base, pairs, steps, lr, batch, seed, tmp)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)  # atomic: a crash mid-training never leaves a half-written model behind
    return target
