"""The causal-LM training loop shared by ``pretrain``, ``sft`` and ``lora``, read top to bottom.

``fit`` does, in order: tokenise the update data and the replay rows; build the regularisers (KL, EWC) from
the model *before* it changes; then, each step, take a batch whose ``replay.share`` comes from replay rows,
compute the task loss + penalties, step AdamW (linear warm-up, clipped gradients). Nothing else happens in the
loop, so its speed is the speed of the forward/backward passes (see ``bench/update_throughput.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from loopgate.errors import DataError
from loopgate.spec import Recipe, ReplaySettings
from loopgate.train.data import batches, replay_count, tokenize_rows
from loopgate.train.precision import Precision
from loopgate.train.progress import TrainProgress
from loopgate.train.regularizers import EWC, Regularizer, RetentionKL
from loopgate.train.remedies import redo, shrink_perturb
from loopgate.train.trained import FitStats  # noqa: F401  (its old home: importers still find it here)

MAX_GRAD_NORM = 1.0  # tiny models trained from scratch at lr 1e-3 spike without it
FINAL_LOSS_WINDOW = 10  # the final loss is a mean over the last steps: one step's loss is too noisy to compare


def fit(model: nn.Module, tokenizer: PreTrainedTokenizerBase, recipe: Recipe, rows: Sequence[dict[str, str]], *,
        replay_rows: Sequence[dict[str, str]] = (), retention_rows: Sequence[dict[str, str]] = (),
        steps: int | None = None, progress: bool = False, description: str = "train",
        precision: Precision | None = None) -> FitStats:
    """Train ``model`` in place on ``rows`` (+ replay, + regularisers) for ``steps`` (default ``recipe.steps``),
    on the model's device, under ``precision``'s autocast (see ``loopgate/train/precision.py``)."""
    steps = steps or recipe.steps
    device = next(model.parameters()).device
    forward = precision.forward if precision is not None else contextlib.nullcontext
    if recipe.gradient_checkpointing:  # activations recomputed in the backward pass: memory for time
        _checkpointing(model, True)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    new = tokenize_rows(rows, tokenizer, recipe.max_length)
    replay = tokenize_rows(replay_rows, tokenizer, recipe.max_length)
    share = (recipe.replay or ReplaySettings.model_validate({})).share if replay else 0.0

    # Regularisers snapshot the model before the first step; the retention set is retention rows + replay rows.
    retention = tokenize_rows(retention_rows, tokenizer, recipe.max_length) + replay
    regularizers: list[Regularizer] = []
    for settings, cls in ((recipe.kl, RetentionKL), (recipe.ewc, EWC)):
        if settings is None:
            continue
        if not retention:
            raise DataError(f"the recipe asks for a {cls.name} regulariser but no retention or replay data was given; "
                            "pass retention files (or replay files), or remove the section from the recipe")
        regularizers.append(cls(model, retention, settings, batch_size=max(1, recipe.batch_size // 4),  # type: ignore[arg-type]
                                seed=recipe.seed, pad_id=pad_id))

    if recipe.shrink is not None:  # after the regularisers' snapshot: they anchor to the model as it was given
        shrink_perturb(model, recipe.shrink, recipe.noise, recipe.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    warmup = recipe.warmup_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / (warmup + 1)))

    model.train()
    # the step losses stay on the device and are read back once, at the end (and by the progress bar when it
    # redraws): a ``.item()`` per step would make the host wait for the GPU every step, and a loop that cannot
    # queue the next step's kernels while the GPU runs this one is launch-bound on small models
    recent: list[torch.Tensor] = []
    data = batches(new, replay, batch_size=recipe.batch_size, share=share, steps=steps, seed=recipe.seed,
                   pad_id=pad_id)
    with TrainProgress(steps, description, progress) as bar:
        redo_rng = torch.Generator().manual_seed(recipe.seed)
        for step, batch in enumerate(data, 1):
            optimizer.zero_grad(set_to_none=True)
            task_loss: torch.Tensor | None = None  # on the loss's device (the last one of a model spread by accelerate)
            for k, (part, weight) in enumerate(batch.split(recipe.grad_accum)):
                with forward():
                    loss = model(**part.model_inputs(device)).loss
                    if weight != 1.0:
                        loss = loss * weight
                    part_loss = loss.detach().float()
                    task_loss = part_loss if task_loss is None else task_loss + part_loss
                    if k == 0:
                        for reg in regularizers:
                            loss = loss + reg.penalty(model)
                loss.backward()
            torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
            optimizer.step()
            scheduler.step()
            if recipe.redo_every and step % recipe.redo_every == 0:
                redo(model, batch.model_inputs(device), recipe.redo_tau, optimizer, redo_rng)
            assert task_loss is not None  # split() gives at least one part
            recent = (recent + [task_loss])[-FINAL_LOSS_WINDOW:]
            bar.advance(task_loss, batch.n_tokens)
    final_loss = float(torch.stack(recent).mean())  # the one read-back: waits for the last step to finish
    train_s = bar.elapsed_s  # measured after it, so a GPU's queued work is inside the figure
    model.eval()
    if recipe.gradient_checkpointing:
        _checkpointing(model, False)
    return FitStats(final_loss=final_loss, tokens_seen=bar.tokens, tokens_per_s=bar.tokens / max(train_s, 1e-9),
                    train_s=train_s, replay_rows_per_batch=replay_count(recipe.batch_size, share, bool(replay)))


def _checkpointing(model: nn.Module, on: bool) -> None:
    """Turn activation checkpointing on (non-reentrant: works with frozen LoRA bases) or off."""
    if on:
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers ≥ 5.2's name
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)  # type: ignore[operator]
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)  # type: ignore[operator]
    else:
        disable = getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable
        disable()  # type: ignore[operator]
