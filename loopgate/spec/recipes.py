"""Recipes: how a line is updated (method, hyper-parameters, replay, regularisers, plasticity remedies)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from loopgate.spec.common import MAX_BATCH, MAX_STEPS, MAX_TOKENS, SEED_LIMIT, _Strict


class LoraSettings(_Strict):
    r: int = Field(8, ge=1, le=MAX_BATCH)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    # unset: the model's own projections (``target_modules`` in loopgate/train/lora.py)
    target_modules: list[str] | None = Field(None, min_length=1)
    # LoRA cannot learn to emit tokens whose embeddings were never trained; list their ids (or
    # characters, for the tiny char-level family) here to train just those embedding rows too.
    trainable_tokens: list[int | str] | None = None
    merge: bool = False


class ReplaySettings(_Strict):
    share: float = Field(0.2, ge=0.0, lt=1.0)
    # history: the update data the line and its ancestors were built on; suites: the ``train_path`` of
    # the line's owned and inherited suites (the only rows a registered foundation has)
    sources: list[Literal["history", "suites"]] = ["history"]
    # a run that asks for replay and finds no rows stops with an error unless this is false
    required: bool = True


class KLSettings(_Strict):
    weight: float = Field(1.0, ge=0.0)
    temperature: float = Field(1.0, gt=0.0)


class EWCSettings(_Strict):
    weight: float = Field(100.0, ge=0.0)
    fisher_batches: int = Field(8, ge=1, le=MAX_STEPS)


class DPOSettings(_Strict):
    beta: float = Field(0.1, gt=0.0)
    sft_weight: float = Field(1.0, ge=0.0)


class RewardSpec(_Strict):
    """One reward term of a ``grpo`` update, scored against each row's ``completion`` (its target); the reward of a
    sampled answer is the weighted sum of the terms (``loopgate/train/rewards.py``)."""

    kind: Literal["exact", "contains", "regex", "numeric", "custom"] = "exact"
    weight: float = 1.0
    pattern: str | None = None  # regex: a match of this pattern (``{target}`` is replaced by the escaped target)
    tolerance: float = Field(0.0, ge=0.0)  # numeric: |answer - target| <= tolerance scores 1
    function: str | None = None  # custom: "package.module:function", code the team owns (imported, never eval'd)
    normalize: bool = True  # strip and lower-case before comparing


class GRPOSettings(_Strict):
    """Group-relative policy optimisation (trl's ``GRPOTrainer``) anchored to the version the update starts from."""

    beta: float = Field(0.04, gt=0.0)  # KL weight to the reference (the line's production version): never 0
    num_generations: int = Field(4, ge=2, le=MAX_BATCH)
    max_new_tokens: int = Field(16, ge=1, le=MAX_TOKENS)
    temperature: float = Field(1.0, gt=0.0)
    rewards: list[RewardSpec] = [RewardSpec()]
    # rows whose target is a refusal (the line's safety prompts, e.g. replayed from its safety suite's
    # train_path) are rewarded for refusing, with this weight, instead of by ``rewards``
    safety_weight: float = Field(1.0, ge=0.0)
    refusal_markers: list[str] = ["I cannot help", "I can't help", "I won't", "I cannot assist"]


class TinyModelSettings(_Strict):
    """Shape of the built-in tiny model, for a foundation trained from nothing (``pretrain``/``sft`` with no
    parent version)."""

    hidden_size: int = Field(128, ge=1, le=MAX_BATCH)
    num_layers: int = Field(4, ge=1, le=1024)
    num_heads: int = Field(4, ge=1, le=1024)
    intermediate_size: int = Field(512, ge=1, le=4 * MAX_BATCH)
    max_positions: int = Field(256, ge=1, le=MAX_TOKENS)

    @model_validator(mode="after")
    def _heads_divide_the_width(self) -> TinyModelSettings:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} must be a multiple of num_heads {self.num_heads}")
        return self


class Recipe(_Strict):
    """How a line is updated: method, hyper-parameters, replay and regularisers."""

    method: Literal["pretrain", "sft", "lora", "dpo", "grpo"] = "sft"
    steps: int = Field(200, ge=1, le=MAX_STEPS)
    batch_size: int = Field(32, ge=1, le=MAX_BATCH)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0.0)
    warmup_steps: int = Field(0, ge=0, le=MAX_STEPS)
    max_length: int = Field(128, ge=8, le=MAX_TOKENS)
    seed: int = Field(0, ge=0, lt=SEED_LIMIT)
    # memory levers for big models (loopgate/train/precision.py): recompute activations in the backward pass;
    # run each step's batch as ``grad_accum`` micro-batches (the same effective batch, less activation memory)
    gradient_checkpointing: bool = False
    grad_accum: int = Field(1, ge=1, le=MAX_BATCH)
    lora: LoraSettings | None = None
    replay: ReplaySettings | None = None
    kl: KLSettings | None = None
    ewc: EWCSettings | None = None
    dpo: DPOSettings | None = None
    grpo: GRPOSettings | None = None
    model: TinyModelSettings | None = None
    # plasticity remedies (loopgate/train/remedies.py): shrink-and-perturb before the first step (θ ← shrink·θ +
    # noise·θ_fresh_init), ReDo re-initialisation of τ-dormant MLP units every ``redo_every`` steps
    shrink: float | None = Field(None, gt=0.0, le=1.0)
    noise: float = Field(0.0, ge=0.0)
    redo_every: int | None = Field(None, ge=1)
    redo_tau: float = Field(0.1, ge=0.0)

    @model_validator(mode="after")
    def _remedies_need_the_full_weight_loop(self) -> Recipe:
        # both remedies change the base weights inside the shared training loop: a LoRA update keeps them frozen
        # (ReDo used to fail at its first reset, steps into the run), and DPO/GRPO run in trl, which has no hook
        # for them (they were silently ignored there)
        asked = [name for name, on in (("shrink", self.shrink is not None), ("redo_every", self.redo_every))
                 if on]
        if asked and self.method not in ("sft", "pretrain"):
            raise ValueError(f"{' and '.join(asked)} (a plasticity remedy) works with method 'sft' or 'pretrain' "
                             f"only, not '{self.method}': it resets base weights, which "
                             + ("a LoRA update keeps frozen" if self.method == "lora" else
                                f"the '{self.method}' trainer does not touch"))
        return self
