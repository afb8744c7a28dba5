"""``grpo``: continual reinforcement learning with trl's ``GRPOTrainer``, anchored and constrained.

Read top to bottom:

1. **Data**: the update's ``{"prompt", "completion"}`` rows, the completion being each prompt's target, plus
   replay rows at ``replay.share`` of the dataset — among them the line's safety prompts with their refusals
   (replayed from the safety suite's ``train_path``), which the reward scores by refusing only
   (:mod:`loopgate.train.rewards`).
2. **Reward**: the weighted rule and custom terms declared in ``recipe.grpo.rewards``.
3. **Anchor**: a KL penalty (``grpo.beta`` > 0; the spec refuses 0) to a frozen reference model: the version
   the update starts from, which the loop makes the line's *production* version whenever it has one
   (``loop.start.start_version``); ``reference_dir`` overrides it.
4. **Train** on CPU in float32: ``num_generations`` answers sampled per prompt, rewards normalised within each
   group, ``recipe.batch_size`` completions per step (a multiple of ``num_generations``), ``recipe.steps`` steps.

The usual gates then judge the candidate like any other: a reward that can be gamed shows up as a regression or
a cost (longer answers) and is blocked there.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import PrinterCallback

from loopgate.errors import SpecError
from loopgate.models import load_model, save_model
from loopgate.spec import GRPOSettings, Recipe
from loopgate.train.loop import FINAL_LOSS_WINDOW, FitStats
from loopgate.train.precision import Precision, training_precision
from loopgate.train.progress import TrainProgress
from loopgate.train.rewards import Reward
from loopgate.train.trained import Trained
from loopgate.train.trainer_progress import ProgressCallback, trainer_args


def check_recipe(recipe: Recipe) -> GRPOSettings:
    """The recipe's GRPO settings, or a ``SpecError`` saying what to change."""
    settings = recipe.grpo or GRPOSettings()
    if recipe.batch_size % settings.num_generations:
        raise SpecError(f"a 'grpo' recipe's batch_size ({recipe.batch_size}) must be a multiple of "
                        f"grpo.num_generations ({settings.num_generations}): each prompt's answers are compared "
                        "within one batch")
    if recipe.batch_size % recipe.grad_accum:
        raise SpecError(f"a 'grpo' recipe's batch_size ({recipe.batch_size}) must be a multiple of grad_accum "
                        f"({recipe.grad_accum}): the step's answers are split into equal micro-batches")
    if recipe.lora or recipe.kl or recipe.ewc:
        raise SpecError("a 'grpo' recipe trains full weights with its own KL anchor (grpo.beta); remove its "
                        "lora, kl and ewc sections")
    return settings


def grpo_config(recipe: Recipe, settings: GRPOSettings, precision: Precision, scratch: str) -> Any:
    """trl's config from the recipe: ``batch_size`` answers per step in ``grad_accum`` micro-batches (trl's
    generation batch is their product), gradient checkpointing only when the recipe asks (trl 1.x turns it on)."""
    from trl import GRPOConfig  # trl is imported where it trains, not when the CLI starts

    return GRPOConfig(
        **trainer_args(recipe, precision, scratch),
        per_device_train_batch_size=recipe.batch_size // recipe.grad_accum,
        gradient_accumulation_steps=recipe.grad_accum,
        num_generations=settings.num_generations,
        max_completion_length=settings.max_new_tokens,
        temperature=settings.temperature,
        beta=settings.beta,
        gradient_checkpointing=recipe.gradient_checkpointing,
    )


def dataset_rows(rows: Sequence[dict[str, str]], replay_rows: Sequence[dict[str, str]], share: float,
                 seed: int) -> list[dict[str, str]]:
    """The update's rows plus replay rows making up ``share`` of the whole, as ``{"prompt", "target"}``."""
    usable = [r for r in replay_rows if "prompt" in r and "completion" in r]  # raw-text replay has no target
    n_replay = min(len(usable), round(len(rows) * share / (1.0 - share))) if usable and share > 0 else 0
    picked = random.Random(seed).sample(usable, n_replay) if n_replay else []
    return [{"prompt": r["prompt"], "target": r["completion"]} for r in [*rows, *picked]]


def grpo(parent_dir: Path, recipe: Recipe, rows: Sequence[dict[str, str]], out_dir: Path, *,
         replay_rows: Sequence[dict[str, str]] = (), reference_dir: Path | None = None,
         progress: bool = False) -> Trained:
    """GRPO on the full weights of ``parent_dir``, KL-anchored to ``reference_dir`` (default: the parent)."""
    # trl (and through it datasets and pyarrow) load only for a GRPO update: sft and lora never need them
    from datasets import Dataset
    from trl import GRPOTrainer

    settings = check_recipe(recipe)
    reward = Reward(settings)
    # on the device, float32 master weights under bf16 autocast where the device has it (train/precision.py)
    precision = training_precision(frozen_base=False)
    loaded = load_model(parent_dir, trainable=True, dtype=precision.load_dtype, device=precision.device)
    model, tokenizer = loaded.model, loaded.tokenizer
    model.requires_grad_(True)
    n_params = sum(p.numel() for p in model.parameters())
    share = recipe.replay.share if recipe.replay is not None else 0.2
    data = Dataset.from_list(dataset_rows(rows, replay_rows, share, recipe.seed))
    torch.manual_seed(recipe.seed)
    with tempfile.TemporaryDirectory(prefix="loopgate-grpo-") as scratch:
        args = grpo_config(recipe, settings, precision, scratch)
        with TrainProgress(recipe.steps, "grpo", progress) as bar:
            callback = ProgressCallback(bar)
            trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=args, train_dataset=data,
                                  processing_class=tokenizer, callbacks=[callback])
            trainer.remove_callback(PrinterCallback)
            # trl builds its reference from the policy's own folder; the anchor's weights are copied into it from
            # the version the loop names, read through the safetensors-only loader
            if reference_dir is not None:
                anchor = load_model(reference_dir, dtype=precision.load_dtype,
                                    device=precision.device).model.state_dict()
                trainer.accelerator.unwrap_model(trainer.ref_model).load_state_dict(anchor)
            trainer.train()
    recent = callback.rewards[-FINAL_LOSS_WINDOW:] or [float("nan")]
    # the "final loss" of an RL update is its negated mean reward over the last steps: lower is better, as for SFT
    stats = FitStats(final_loss=-sum(recent) / len(recent), tokens_seen=bar.tokens, tokens_per_s=bar.tokens_per_s,
                     train_s=bar.elapsed_s, replay_rows_per_batch=0)
    tokenizer.padding_side = "left"
    model.eval()
    save_model(model.to(precision.compute_dtype), tokenizer, out_dir)  # type: ignore[arg-type]  # saved as computed, as sft and dpo
    return Trained("full", stats, n_params, precision.record())
