"""Plasticity figures of a causal LM: can it still learn? (DESIGN.md § Metrics → Plasticity)

- **dormant-unit ratio** (Sokar et al. 2023, "The Dormant Neuron Phenomenon in Deep RL", ReDo's definition):
  for each MLP unit i of a layer, s_i = mean |h_i| / (mean over the layer's units of mean |h_k|), over the
  non-pad tokens of a probe batch; a unit is τ-dormant when s_i ≤ τ. The ratio is dormant units / all units.
  h is the input of the MLP's down projection (for Llama: act(gate_proj(x)) × up_proj(x)), the per-unit
  activation. τ = 0 counts only units that are exactly silent.

  **τ is calibrated for the tiny family, by measurement** (``DEFAULT_TAU = 0.1``). The paper's τ = 0.025 (for
  ReLU DQNs) read 0.000 for every demo and test model: a SwiGLU unit is a product of two projections and is
  almost never near-silent on real text. Measured on the probe batch (hidden 64–128, 2–4 layers, seeds 0–1):
  a fresh init's lowest unit scores s_i are 0.40–0.43 (1 % quantile), so 0 % of its units are dormant at any
  τ ≤ 0.3; models trained normally (lr 3e-3, 300–600 steps) have 1 % quantiles of 0.10–0.22 and read 0–1.2 %
  at τ = 0.1; four successive full updates at lr 1e-2 without replay drive the 1 % quantile to 0.000–0.012 and
  read 10–50 %. τ = 0.1 sits a factor 4 below every fresh unit and separates the three cases.
- **effective rank** (Roy & Vetterli 2007) of the last hidden states of the probe batch (tokens ×
  hidden, uncentred): exp of the Shannon entropy of the singular values normalised to sum to 1. It needs no
  calibration on this family: measured at 43–58 for a fresh init, 28–37 after normal training and 4–12 after
  repeated high-lr updates without replay (hidden 64–128).
- **weight norm**: L2 norm of all parameters taken as one vector.
- **probe task**: a FIXED fresh task — a random substitution cipher over the 26 lowercase letters,
  shown as interleaved pairs "p₁c₁p₂c₂…"; the loss is the cross-entropy on the cipher letters only.
  A deep copy of the model takes ``probe_steps`` full-batch AdamW steps on a training batch; the
  loss on a held-out batch of the same cipher is measured before (``probe_loss_start``) and after
  (``probe_loss_end``); ``probe_improvement`` = exp(−probe_loss_end), the geometric-mean probability the
  model gives the right cipher letter after the steps: what it *learned*, measured from the same floor (zero)
  for every model. Not start − end: a model that repeated updates made confidently wrong starts the probe at
  8–15 nats (a fresh init: 4.6), removes *more* nats than its foundation and still ends far above it
  (measured, hidden 64: foundation 4.6 → 4.0, after two updates at lr 1e-2 without replay 14 → 7.7; a
  shrink-and-perturb update from there ends at 5.1), so the difference read more plasticity after erosion;
  the share (start − end) / start read the same 0.52–0.64 for all three.
- **plasticity headroom** = probe_improvement(model) / probe_improvement(reference) = exp(end_ref − end), the
  reference being the line's foundation ancestor profiled with the same ``probe_steps`` and ``seed``. 1 means
  the model learns a new task as well as the foundation; 0.5 means its right-letter probability after the
  probe is half the foundation's (its loss 0.69 nats higher).

Everything is deterministic for a given seed, and the passed model is never modified.
"""

from __future__ import annotations

import copy
import functools
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from loopgate.evaluate.engine import ENGINE_LIBRARIES, code_hash
from loopgate.evaluate.metrics import plasticity_headroom
from loopgate.train.remedies import scored_forward

__all__ = [
    "DEFAULT_TAU",
    "dormant_ratio",
    "effective_rank",
    "plasticity_headroom",
    "plasticity_profile",
    "profile_code_version",
    "weight_norm",
]

DEFAULT_TAU = 0.1  # calibrated for the tiny family: see the module docstring
# The code whose change changes a profile's figures (the probe, the dormant-unit score, the headroom formula, the
# parameter count, model loading): their bytes key the profile cache, as ENGINE_SOURCES key evaluations — once a
# recalibrated τ was served stale figures from cache.
PROFILE_SOURCES = ("evaluate/plasticity.py", "train/remedies.py", "evaluate/metrics.py", "evaluate/engine.py",
                   "models/io.py", "executors/jobs.py")
# Fixed probe texts: plain ASCII so that every tokenizer (char-level or BPE) can encode them.
PROBE_TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "Reset the pump before you open valve 3.",
    "Order #4512 ships on Monday, not Friday.",
    "What is the boiling point of water at sea level?",
    "Please summarise the incident report in two lines.",
    "Inventory: 12 bolts, 7 nuts, 3 washers.",
    "If the alarm sounds, leave by the north exit.",
    "She said the model was ready for release.",
)
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
# the cipher itself is fixed (not the caller's seed) so that every model faces the same task
_CIPHER_SEED = 20230201
_PROBE_LR = 5e-4
_PROBE_BATCH = 32
_PROBE_PAIRS = 12


@functools.cache
def profile_code_version() -> str:
    """The hash of the code that decides a profile's figures (``PROFILE_SOURCES``) and of the libraries it runs on."""
    return code_hash(Path(__file__).resolve().parents[1], PROFILE_SOURCES, ENGINE_LIBRARIES)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _probe_batch(tokenizer: Any, device: torch.device) -> dict[str, torch.Tensor]:
    enc = tokenizer(list(PROBE_TEXTS), return_tensors="pt", padding=True)
    return {"input_ids": enc["input_ids"].to(device), "attention_mask": enc["attention_mask"].to(device)}


def effective_rank(features: np.ndarray | torch.Tensor) -> float:
    """exp(entropy of the singular values normalised to sum 1); 0 for an all-zero matrix."""
    x = torch.as_tensor(features, dtype=torch.float64)
    s = torch.linalg.svdvals(x)
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def dormant_ratio(model: nn.Module, tokenizer: Any, tau: float = DEFAULT_TAU) -> float:
    """Share of τ-dormant MLP units over all layers on the probe batch (Sokar et al. 2023)."""
    batch = _probe_batch(tokenizer, _device(model))
    return _forward_figures(model, batch, tau)[0]


def _forward_figures(model: nn.Module, batch: dict[str, torch.Tensor], tau: float) -> tuple[float, float]:
    """(dormant ratio, effective rank of the last hidden states) from one forward pass; a unit's score is the
    one the ReDo remedy uses (:func:`loopgate.train.remedies.unit_scores`)."""
    scores, out = scored_forward(model, batch, output_hidden_states=True)
    dormant = sum(int((score <= tau).sum()) for score in scores)
    total = sum(score.numel() for score in scores)
    last_hidden = out.hidden_states[-1][batch["attention_mask"].bool()]
    return dormant / total, effective_rank(last_hidden)


def weight_norm(model: nn.Module) -> float:
    """L2 norm of all parameters as one vector."""
    with torch.no_grad():
        return math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p in model.parameters()))


def _letter_ids(tokenizer: Any) -> list[int]:
    ids = []
    for ch in _LETTERS:
        enc = tokenizer(ch, add_special_tokens=False)["input_ids"]
        if len(enc) != 1:
            raise ValueError(f"the tokenizer splits the letter {ch!r} into {len(enc)} tokens; the probe needs one")
        ids.append(enc[0])
    return ids


def _cipher_batches(tokenizer: Any, seed: int, device: torch.device) -> tuple[dict[str, torch.Tensor], ...]:
    """(train, held-out) batches of the fixed cipher task; plaintexts drawn from ``seed``."""
    letters = _letter_ids(tokenizer)
    cipher = list(range(26))
    random.Random(_CIPHER_SEED).shuffle(cipher)
    rng = random.Random(seed)
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    batches = []
    for _ in range(2):
        rows, labels = [], []
        for _ in range(_PROBE_BATCH):
            seq, lab = list(bos), [-100] * len(bos)
            for _ in range(_PROBE_PAIRS):
                p = rng.randrange(26)
                seq += [letters[p], letters[cipher[p]]]
                lab += [-100, letters[cipher[p]]]  # only the cipher letter is predictable
            rows.append(seq)
            labels.append(lab)
        batches.append({"input_ids": torch.tensor(rows, device=device), "labels": torch.tensor(labels, device=device)})
    return tuple(batches)


def _probe_losses(model: nn.Module, tokenizer: Any, steps: int, seed: int) -> tuple[float, float]:
    """(held-out loss before, after) ``steps`` AdamW steps of a deep copy on the probe task."""
    device = _device(model)
    train, held_out = _cipher_batches(tokenizer, seed, device)
    student = copy.deepcopy(model)
    for p in student.parameters():
        p.requires_grad_(True)
    with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
        torch.manual_seed(seed)
        student.eval()  # no dropout: the figure must not depend on random masks
        with torch.no_grad():
            start = float(student(**held_out).loss)
        opt = torch.optim.AdamW(student.parameters(), lr=_PROBE_LR, weight_decay=0.0)
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            student(**train).loss.backward()
            opt.step()
        with torch.no_grad():
            end = float(student(**held_out).loss)
    del student, opt
    return start, end


def plasticity_profile(model: nn.Module, tokenizer: Any, *, probe_steps: int = 30, seed: int = 0,
                       tau: float = DEFAULT_TAU) -> dict[str, float]:
    """Dormant ratio, effective rank, weight norm and probe-task losses of ``model`` (left unchanged)."""
    dormant, erank = _forward_figures(model, _probe_batch(tokenizer, _device(model)), tau)
    start, end = _probe_losses(model, tokenizer, probe_steps, seed)
    return {
        "dormant_ratio": dormant,
        "effective_rank": erank,
        "weight_norm": weight_norm(model),
        "probe_loss_start": start,
        "probe_loss_end": end,
        "probe_improvement": math.exp(-end),
        "probe_steps": float(probe_steps),
        "dormant_tau": tau,
    }
