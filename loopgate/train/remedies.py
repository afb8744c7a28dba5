"""Plasticity remedies, applied by the training loop when a recipe asks for them.

- **shrink-and-perturb** (Ash & Adams 2020, "On Warm-Starting Neural Network Training"): before the first step,
  every trainable weight becomes ``shrink · θ + noise · θ₀`` where θ₀ is a *fresh initialisation* of the same
  architecture (seeded by the recipe). Shrinking pulls weights that grew large (and saturated units) back toward
  zero; the fresh-init term restores the diversity of a new network. Recipe keys: ``shrink`` (λ, e.g. 0.8) and
  ``noise`` (γ, e.g. 0.1).
- **ReDo** (Sokar et al. 2023, "The Dormant Neuron Phenomenon in Deep RL"): every ``redo_every`` steps, the MLP
  units whose score s_i = mean |h_i| / (layer mean of mean |h_k|) on the current batch is ≤ ``redo_tau`` are
  re-initialised: their incoming rows (``gate_proj``, ``up_proj``) are drawn afresh (at the scale of the layer's
  live rows), their outgoing column
  (``down_proj``) is zeroed so the network's output does not jump, and AdamW's moments for them are cleared.

Both work on full-weight updates of Llama-style models (``sft``, ``pretrain``): a LoRA update cannot change the
frozen base weights that hold the dormant units. :func:`unit_scores` is the one definition of a unit's score,
the same score as the dormant-unit ratio's in :mod:`loopgate.evaluate.plasticity`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from loopgate.errors import SpecError

# module-name suffixes of an MLP's down projection, whose *input* is the per-unit activation
DOWN_PROJECTIONS = ("mlp.down_proj", "mlp.c_proj", "mlp.fc2", "mlp.dense_4h_to_h")
PERTURB_SEED_OFFSET = 104_729


def down_projections(model: nn.Module) -> list[nn.Module]:
    """The modules whose input is the per-unit MLP activation, one per layer."""
    found = [m for name, m in model.named_modules() if name.endswith(DOWN_PROJECTIONS)]
    if not found:
        raise ValueError("no MLP down projection found (looked for mlp.down_proj / c_proj / fc2 / dense_4h_to_h)")
    return found


def unit_scores(model: nn.Module, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """Per layer, each MLP unit's score: mean |activation| over the batch's real tokens / the layer's mean.

    The model's train/eval mode is left as it was."""
    return scored_forward(model, batch)[0]


def scored_forward(model: nn.Module, batch: dict[str, torch.Tensor], **forward_kwargs: Any
                   ) -> tuple[list[torch.Tensor], Any]:
    """:func:`unit_scores` and the model's output of the same no-grad eval-mode forward pass (the plasticity
    profile reads the hidden states of the pass that scored the units)."""
    mask = batch["attention_mask"].bool()
    means: list[torch.Tensor] = []

    def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        means.append(args[0][mask].abs().float().mean(dim=0))

    handles = [m.register_forward_pre_hook(hook) for m in down_projections(model)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **forward_kwargs)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return [m / m.mean() if m.mean() > 0 else torch.zeros_like(m) for m in means], out


def _check_full_model(model: nn.Module, remedy: str) -> None:
    if hasattr(model, "peft_config"):
        raise SpecError(f"{remedy} changes the base weights, which a LoRA update keeps frozen; use it with a "
                        "full-weight method ('sft' or 'pretrain'), or remove it from the recipe")


@torch.no_grad()
def shrink_perturb(model: nn.Module, shrink: float, noise: float, seed: int) -> None:
    """θ ← shrink·θ + noise·θ₀ for every trainable weight, θ₀ a fresh seeded init of the same architecture."""
    _check_full_model(model, "shrink-and-perturb")
    config = getattr(model, "config", None)
    if config is None:
        raise SpecError("shrink-and-perturb needs a Hugging Face model (it re-initialises from model.config)")
    with torch.random.fork_rng(devices=[]):
        # offset: a tiny model built with the recipe's seed must not be perturbed towards its own init
        torch.manual_seed(seed + PERTURB_SEED_OFFSET)
        fresh = type(model)(config).to(next(model.parameters()).device)
    fresh_params = dict(fresh.named_parameters())
    for name, p in model.named_parameters():
        if p.requires_grad:
            p.mul_(shrink).add_(fresh_params[name].to(p.dtype), alpha=noise)


def _llama_mlps(model: nn.Module) -> list[nn.Module]:
    mlps = [m for name, m in model.named_modules()
            if name.endswith("mlp") and all(hasattr(m, k) for k in ("gate_proj", "up_proj", "down_proj"))]
    if not mlps:
        raise SpecError("ReDo re-initialises Llama-style MLP units (gate_proj, up_proj, down_proj); this model has "
                        "none — remove redo_every from the recipe")
    return mlps


@torch.no_grad()
def redo(model: nn.Module, batch: dict[str, torch.Tensor], tau: float, optimizer: torch.optim.Optimizer | None,
         generator: torch.Generator) -> int:
    """Re-initialise the τ-dormant MLP units on ``batch``; the number of units re-initialised."""
    _check_full_model(model, "ReDo")
    mlps = _llama_mlps(model)
    scores = unit_scores(model, batch)
    count = 0
    for mlp, score in zip(mlps, scores, strict=True):
        dormant = (score <= tau).nonzero().flatten()
        if dormant.numel() == 0 or dormant.numel() == score.numel():
            continue
        count += int(dormant.numel())
        live = score > tau
        incoming: list[torch.Tensor] = [mlp.gate_proj.weight, mlp.up_proj.weight]  # type: ignore[union-attr,list-item]
        outgoing: torch.Tensor = mlp.down_proj.weight  # type: ignore[union-attr,assignment]
        for w in incoming:
            # drawn at the scale of the layer's live rows, not the init's: next to rows that training grew, a
            # unit re-drawn at init scale scores as dormant again at once
            std = float(w[live].std())
            fresh = torch.randn((dormant.numel(), w.shape[1]), generator=generator, dtype=w.dtype) * std
            w[dormant] = fresh.to(w.device)
            _clear_moments(optimizer, w, rows=dormant)
        outgoing[:, dormant] = 0.0
        _clear_moments(optimizer, outgoing, cols=dormant)
    return count


def _clear_moments(optimizer: torch.optim.Optimizer | None, p: torch.Tensor, *, rows: torch.Tensor | None = None,
                   cols: torch.Tensor | None = None) -> None:
    """Zero AdamW's running moments of the re-initialised rows/columns (stale moments would undo the reset)."""
    state = optimizer.state.get(p) if optimizer is not None else None
    for key in ("exp_avg", "exp_avg_sq"):
        if state and key in state:
            if rows is not None:
                state[key][rows] = 0.0
            if cols is not None:
                state[key][:, cols] = 0.0
