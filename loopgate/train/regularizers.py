"""Regularisers that keep an update close to the previous version on a retention set.

- :class:`RetentionKL` — KL(previous ‖ current) of next-token distributions on retention rows (the
  "learning without forgetting" / distillation form: match the previous model's *outputs*, not its weights).
- :class:`EWC` — elastic weight consolidation (Kirkpatrick et al. 2017): a quadratic pull towards the parent's
  weights, each weight scaled by its diagonal Fisher information on retention data.

Both are plain objects with ``penalty(model) -> tensor`` that the training loop adds to the task loss.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from loopgate.spec import EWCSettings, KLSettings
from loopgate.train.data import IGNORE_INDEX, Example, collate


class Regularizer:
    """Something the training loop adds to the task loss each step."""

    name = "regularizer"

    def penalty(self, model: nn.Module) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class RetentionKL(Regularizer):
    """``weight · T² · KL(p_prev ‖ p_cur)`` on one retention batch per step, over the rows' answer tokens.

    The previous version is a frozen deep copy taken before training starts — for a LoRA update that continues
    an adapter, that is base + old adapter, which ``disable_adapter()`` could not give.
    """

    name = "kl"

    def __init__(self, model: nn.Module, retention: Sequence[Example], settings: KLSettings, *, batch_size: int,
                 seed: int, pad_id: int) -> None:
        self.settings, self.retention, self.batch_size, self.pad_id = settings, list(retention), batch_size, pad_id
        self.previous = copy.deepcopy(model).eval()
        for p in self.previous.parameters():
            p.requires_grad_(False)
        self.rng = random.Random(f"{seed}:kl")

    def penalty(self, model: nn.Module) -> torch.Tensor:
        batch = collate(self.rng.sample(self.retention, min(self.batch_size, len(self.retention))), self.pad_id)
        t = self.settings.temperature
        inputs = batch.model_inputs(next(model.parameters()).device)
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        with torch.no_grad():
            prev = self.previous(input_ids=ids, attention_mask=mask).logits
        cur = model(input_ids=ids, attention_mask=mask).logits
        # position i predicts token i+1: the answer tokens are where the *next* label is not ignored
        keep = inputs["labels"][:, 1:] != IGNORE_INDEX
        prev_logp = F.log_softmax(prev[:, :-1][keep] / t, dim=-1)
        cur_logp = F.log_softmax(cur[:, :-1][keep] / t, dim=-1)
        kl = F.kl_div(cur_logp.float(), prev_logp.float(), log_target=True, reduction="batchmean")
        return self.settings.weight * t * t * kl


class EWC(Regularizer):
    """``weight/2 · Σ F_i (θ_i − θ*_i)²`` over the trainable parameters, θ* the weights before the update.

    F is the empirical diagonal Fisher: the mean of squared per-example gradients of the parent's
    log-likelihood on ``fisher_batches × batch_size`` retention rows (per example, not per batch — squaring a
    batch-mean gradient underestimates F by roughly the batch size).
    """

    name = "ewc"

    def __init__(self, model: nn.Module, retention: Sequence[Example], settings: EWCSettings, *, batch_size: int,
                 seed: int, pad_id: int) -> None:
        self.settings = settings
        self.params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self.anchor = {n: p.detach().clone() for n, p in self.params.items()}
        self.fisher = {n: torch.zeros_like(p) for n, p in self.params.items()}
        rows = list(retention)
        random.Random(f"{seed}:ewc").shuffle(rows)
        rows = rows[: settings.fisher_batches * batch_size]
        was_training = model.training
        model.eval()  # no dropout: the Fisher of the deployed parent
        for ex in rows:
            batch = collate([ex], pad_id)
            model.zero_grad(set_to_none=True)
            model(**batch.model_inputs(next(model.parameters()).device)).loss.backward()
            for n, p in self.params.items():
                if p.grad is not None:
                    self.fisher[n] += p.grad.detach() ** 2
        model.zero_grad(set_to_none=True)
        model.train(was_training)
        for n in self.fisher:
            self.fisher[n] /= max(len(rows), 1)

    def penalty(self, model: nn.Module) -> torch.Tensor:
        total = torch.zeros((), device=next(iter(self.anchor.values())).device)
        for n, p in self.params.items():
            total = total + (self.fisher[n] * (p - self.anchor[n]) ** 2).sum()
        return 0.5 * self.settings.weight * total
