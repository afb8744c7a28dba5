"""``sft``: full fine-tune on prompt/completion rows (loss on the completion only), optional replay and KL/EWC."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from loopgate.models import ModelRef, load_model, save_model
from loopgate.spec import Recipe
from loopgate.train.loop import fit
from loopgate.train.methods import Trained


def sft(parent_dir: Path | ModelRef | None, recipe: Recipe, rows: Sequence[dict[str, str]], out_dir: Path, *,
        replay_rows: Sequence[dict[str, str]] = (), retention_rows: Sequence[dict[str, str]] = (),
        progress: bool = False) -> Trained:
    """Fine-tune every weight of ``parent_dir`` (``None``: a fresh tiny model, i.e. supervised training from
    nothing) and save a full model directory to ``out_dir``."""
    if parent_dir is None:
        from loopgate.train.pretrain import fresh_tiny_model

        model, tokenizer = fresh_tiny_model(recipe)
    else:
        loaded = load_model(parent_dir, trainable=True)
        model, tokenizer = loaded.model, loaded.tokenizer
    model.requires_grad_(True)
    torch.manual_seed(recipe.seed)
    stats = fit(model, tokenizer, recipe, rows, replay_rows=replay_rows, retention_rows=retention_rows,
                progress=progress, description="sft")
    save_model(model, tokenizer, out_dir)
    return Trained("full", stats, sum(p.numel() for p in model.parameters()))
