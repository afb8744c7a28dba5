"""What DPO and GRPO share around trl's trainers: the arguments a recipe and a precision decide, and the
per-step logs into Loopgate's progress bar (trl's own tqdm is off)."""

from __future__ import annotations

from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from loopgate.spec import Recipe
from loopgate.train.precision import Precision
from loopgate.train.progress import TrainProgress


def trainer_args(recipe: Recipe, precision: Precision, output_dir: str) -> dict[str, Any]:
    """The ``TrainingArguments`` fields both trl configs take from the recipe and the placement: steps, the
    optimiser's schedule, seeds, device and autocast, and no logging, saving or workers of trl's own."""
    return {
        "output_dir": output_dir,
        "max_steps": recipe.steps,
        "learning_rate": recipe.lr,
        "weight_decay": recipe.weight_decay,
        "warmup_steps": recipe.warmup_steps,
        "lr_scheduler_type": "constant_with_warmup",
        "max_grad_norm": 1.0,
        "seed": recipe.seed,
        "data_seed": recipe.seed,
        "use_cpu": precision.device.type == "cpu",
        "bf16": precision.autocast == torch.bfloat16,  # trl/Trainer autocast over the master weights
        "fp16": precision.autocast == torch.float16,
        "report_to": "none",
        "save_strategy": "no",
        "logging_steps": 1,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "include_num_input_tokens_seen": "non_padding",
    }


class ProgressCallback(TrainerCallback):
    """Collects each logged loss (and reward, for GRPO) and advances the bar by the tokens seen."""

    def __init__(self, bar: TrainProgress) -> None:
        self.bar, self.losses, self.tokens = bar, [0.0], 0
        self.rewards: list[float] = []

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        if logs and "loss" in logs:
            self.losses.append(float(logs["loss"]))
        if logs and "reward" in logs:
            self.rewards.append(float(logs["reward"]))

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        seen = int(state.num_input_tokens_seen)
        self.bar.advance(self.losses[-1], seen - self.tokens)
        self.tokens = seen
