"""trl trainers' per-step logs into Loopgate's progress bar (DPO and GRPO share it; trl's own tqdm is off)."""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from loopgate.train.progress import TrainProgress


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
