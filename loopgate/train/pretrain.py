"""``pretrain``: causal LM on raw text, every token in the loss — builds a tiny foundation from nothing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from loopgate.models import ModelRef, TinyConfig, build_tiny_model, load_model, save_model
from loopgate.spec import Recipe
from loopgate.train.loop import fit
from loopgate.train.precision import training_precision
from loopgate.train.trained import Trained


def fresh_tiny_model(recipe: Recipe) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A freshly initialised tiny model shaped by ``recipe.model`` (defaults otherwise), seeded by the recipe."""
    shape = recipe.model.model_dump() if recipe.model is not None else {}
    return build_tiny_model(TinyConfig(seed=recipe.seed, **shape))


def pretrain(parent_dir: Path | ModelRef | None, recipe: Recipe, rows: Sequence[dict[str, str]], out_dir: Path, *,
             replay_rows: Sequence[dict[str, str]] = (), retention_rows: Sequence[dict[str, str]] = (),
             progress: bool = False) -> Trained:
    """Continue pretraining ``parent_dir``, or (``None``) pretrain a fresh tiny model seeded by ``recipe.seed``."""
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    precision = training_precision(frozen_base=False)
    if parent_dir is None:
        model, tokenizer = fresh_tiny_model(recipe)
        model.to(precision.device)  # type: ignore[arg-type]  # transformers types .to() by its decorator
    else:
        loaded = load_model(parent_dir, trainable=True, dtype=precision.load_dtype, device=precision.device)
        model, tokenizer = loaded.model, loaded.tokenizer
    model.requires_grad_(True)
    torch.manual_seed(recipe.seed)  # dropout (if the config has any) draws from the global RNG
    stats = fit(model, tokenizer, recipe, rows, replay_rows=replay_rows, retention_rows=retention_rows,
                progress=progress, description="pretrain", precision=precision)
    save_model(model.to(precision.compute_dtype), tokenizer, out_dir)  # type: ignore[arg-type]  # saved as computed
    return Trained("full", stats, sum(p.numel() for p in model.parameters()), precision.record())
