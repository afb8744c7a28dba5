"""``dpo``: preference updates on ``{"prompt", "chosen", "rejected"}`` rows with trl's ``DPOTrainer``.

trl runs on CPU with the tiny char-level models (FIELD-NOTES), so Loopgate uses it rather than re-deriving the
loss. Two settings matter and are fixed here:

- ``loss_type=["sigmoid", "sft"]``: plain DPO strong enough to flip a margin wrecked greedy generation on the
  tiny models (endless junk); the added SFT term on the chosen answer keeps the model fluent.
  ``dpo.sft_weight: 0`` gives the paper's loss alone.
- plain text: a ``messages`` row is rendered with the model's chat template first (as ``sft`` and evaluation
  render it); trl appends eos to chosen/rejected, matching how ``sft`` rows are trained.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import PrinterCallback

from loopgate.models import load_model, save_model, save_tokenizer
from loopgate.spec import DPOSettings, Recipe
from loopgate.train.data import rendered_prompt
from loopgate.train.loop import FINAL_LOSS_WINDOW, FitStats
from loopgate.train.lora import lora_config
from loopgate.train.precision import training_precision
from loopgate.train.progress import TrainProgress
from loopgate.train.trained import Trained
from loopgate.train.trainer_progress import ProgressCallback, trainer_args


def dpo(parent_dir: Path, recipe: Recipe, rows: Sequence[dict[str, str]], out_dir: Path, *,
        adapter_dir: Path | None = None, progress: bool = False) -> Trained:
    """DPO on ``parent_dir`` (full weights, or a LoRA adapter when ``recipe.lora`` is set); the parent is the
    frozen reference policy."""
    # trl (and through it datasets and pyarrow) load only for a preference update: sft and lora never need them
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    settings = recipe.dpo or DPOSettings()
    precision = training_precision(frozen_base=recipe.lora is not None or adapter_dir is not None)
    loaded = load_model(parent_dir, adapter_dir, trainable=True, dtype=precision.load_dtype, device=precision.device)
    model, tokenizer = loaded.model, loaded.tokenizer
    tokenizer.padding_side = "right"  # trl pads completions itself; right padding is what its collator expects
    n_params = sum(p.numel() for p in model.parameters())
    torch.manual_seed(recipe.seed)
    peft_config = lora_config(recipe.lora, model, tokenizer) if recipe.lora and adapter_dir is None else None
    with_sft = settings.sft_weight > 0
    with tempfile.TemporaryDirectory(prefix="loopgate-dpo-") as scratch:
        args = DPOConfig(
            **trainer_args(recipe, precision, scratch),
            per_device_train_batch_size=max(1, recipe.batch_size // recipe.grad_accum),
            gradient_accumulation_steps=recipe.grad_accum,
            beta=settings.beta,
            loss_type=["sigmoid", "sft"] if with_sft else ["sigmoid"],
            loss_weights=[1.0, settings.sft_weight] if with_sft else None,
            max_length=recipe.max_length,
            gradient_checkpointing=recipe.gradient_checkpointing,  # on by default in trl 1.x; off unless asked
        )
        with TrainProgress(recipe.steps, "dpo", progress) as bar:
            callback = ProgressCallback(bar)
            plain = [{"prompt": rendered_prompt(r, tokenizer), "chosen": r["chosen"], "rejected": r["rejected"]}
                     for r in rows]
            trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(plain),
                                 processing_class=tokenizer, peft_config=peft_config, callbacks=[callback])
            trainer.remove_callback(PrinterCallback)  # with tqdm off, trl would print every step's log dict
            trainer.train()
        trained: Any = trainer.model  # a PreTrainedModel, or a PeftModel when trained with LoRA
    recent = callback.losses[1:][-FINAL_LOSS_WINDOW:] or [float("nan")]
    stats = FitStats(final_loss=sum(recent) / len(recent), tokens_seen=bar.tokens, tokens_per_s=bar.tokens_per_s,
                     train_s=bar.elapsed_s, replay_rows_per_batch=0)
    tokenizer.padding_side = "left"
    trained.eval()
    if hasattr(trained, "peft_config"):
        if recipe.lora is not None and recipe.lora.merge:
            save_model(trained.merge_and_unload(), tokenizer, out_dir)
            return Trained("full", stats, n_params, precision.record())
        out_dir.mkdir(parents=True, exist_ok=True)
        trained.save_pretrained(str(out_dir), safe_serialization=True)
        save_tokenizer(tokenizer, out_dir)
        return Trained("adapter", stats, n_params, precision.record())
    save_model(trained.to(precision.compute_dtype), tokenizer, out_dir)
    return Trained("full", stats, n_params, precision.record())
