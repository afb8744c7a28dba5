"""``sft``: full fine-tune on prompt/completion rows (loss on the completion only), optional replay and KL/EWC."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from loopgate.models import ModelRef, load_model, save_model
from loopgate.spec import Recipe
from loopgate.train.loop import fit
from loopgate.train.precision import training_precision
from loopgate.train.trained import Trained


def sft(parent_dir: Path | ModelRef | None, recipe: Recipe, rows: Sequence[dict[str, str]], out_dir: Path, *,
        replay_rows: Sequence[dict[str, str]] = (), retention_rows: Sequence[dict[str, str]] = (),
        progress: bool = False) -> Trained:
    """Fine-tune every weight of ``parent_dir`` (``None``: a fresh tiny model, i.e. supervised training from
    nothing) and save a full model directory to ``out_dir``."""
    precision = training_precision(frozen_base=False)
    if parent_dir is None:
        from loopgate.train.pretrain import fresh_tiny_model

        model, tokenizer = fresh_tiny_model(recipe)
        model.to(precision.device)  # type: ignore[arg-type]  # transformers types .to() by its decorator
    else:
        loaded = load_model(parent_dir, trainable=True, dtype=precision.load_dtype, device=precision.device)
        model, tokenizer = loaded.model, loaded.tokenizer
    model.requires_grad_(True)
    torch.manual_seed(recipe.seed)
    stats = fit(model, tokenizer, recipe, rows, replay_rows=replay_rows, retention_rows=retention_rows,
                progress=progress, description="sft", precision=precision)
    save_model(model.to(precision.compute_dtype), tokenizer, out_dir)  # type: ignore[arg-type]  # saved as computed
    return Trained("full", stats, sum(p.numel() for p in model.parameters()), precision.record())
