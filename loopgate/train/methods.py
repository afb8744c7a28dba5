"""The table of update methods: what each trains, on which rows, with which remedies — and its training function.

Every place that treats methods differently reads :data:`METHODS` (through :func:`method_facts`); none compares
method names. Adding a method is one entry here plus its training module (see ``docs/architecture.md``, "How to add
an update method"). The table is torch-free: each ``train`` function imports its module when it is called, so
reading a method's facts (``loopgate status``, spec checks) never loads the model libraries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from loopgate.train.trained import RowKind, Trained, TrainInputs

Remedy = Literal["replay", "kl", "ewc", "shrink", "redo"]


@dataclass(frozen=True)
class Method:
    """One update method's facts and its training function."""

    name: str
    trains: Literal["full", "adapter", "full, or an adapter with a lora section"]
    rows: RowKind  # the data schema its update files must have
    remedies: frozenset[Remedy]  # the forgetting/plasticity remedies a recipe of this method may ask for
    train: Callable[[TrainInputs], Trained]
    needs_parent: bool = True  # False: it can start from a fresh tiny model
    continues_adapter: bool = False  # started from an adapter version, it keeps training that adapter
    cut_to_max_length: bool = True  # its rows are cut to ``recipe.max_length`` (False: it sets its own lengths)
    distills: bool = False  # a transfer can re-derive a child by distilling with this method itself
    tunable: bool = False  # ``loopgate tune`` searches recipes of this method
    anchor: str = ""  # what keeps the update close to its parent instead of replay/kl/ewc (when it takes none)

    @property
    def makes_adapter(self) -> bool:
        """Whether every update of this method makes an adapter (one with a lora section may, see ``trains``)."""
        return self.trains == "adapter"


def _pretrain(a: TrainInputs) -> Trained:
    from loopgate.train.pretrain import pretrain

    return pretrain(a.full_parent(), a.recipe, a.rows, a.out_dir, replay_rows=a.replay_rows,
                    retention_rows=a.retention_rows, progress=a.progress)


def _sft(a: TrainInputs) -> Trained:
    from loopgate.train.sft import sft

    return sft(a.full_parent(), a.recipe, a.rows, a.out_dir, replay_rows=a.replay_rows,
               retention_rows=a.retention_rows, progress=a.progress)


def _lora(a: TrainInputs) -> Trained:
    from loopgate.train.lora import lora

    return lora(a.parent(), a.recipe, a.rows, a.out_dir, adapter_dir=a.adapter_dir, replay_rows=a.replay_rows,
                retention_rows=a.retention_rows, progress=a.progress)


def _dpo(a: TrainInputs) -> Trained:
    from loopgate.train.dpo import dpo

    return dpo(a.parent(), a.recipe, a.rows, a.out_dir, adapter_dir=a.adapter_dir, progress=a.progress)


def _grpo(a: TrainInputs) -> Trained:
    from loopgate.train.grpo import grpo

    # the KL anchor: the version the update starts from (production, if any)
    return grpo(a.parent(), a.recipe, a.rows, a.out_dir, replay_rows=a.replay_rows, progress=a.progress)


_ALL: frozenset[Remedy] = frozenset({"replay", "kl", "ewc", "shrink", "redo"})
_RETENTION: frozenset[Remedy] = frozenset({"replay", "kl", "ewc"})

METHODS: dict[str, Method] = {m.name: m for m in (
    Method("pretrain", "full", "text", _ALL, _pretrain, needs_parent=False),
    Method("sft", "full", "sft", _ALL, _sft, needs_parent=False, distills=True, tunable=True),
    Method("lora", "adapter", "sft", _RETENTION, _lora, continues_adapter=True, distills=True, tunable=True),
    Method("dpo", "full, or an adapter with a lora section", "dpo", frozenset(), _dpo, continues_adapter=True,
           # trl's DPOTrainer owns the batch and the loss; its reference model already anchors the update
           anchor="its frozen reference model keeps the update close to the parent (raise dpo.beta or "
                  "dpo.sft_weight for a tighter anchor)"),
    # grpo generates: its lengths are its own settings; its KL anchor is grpo.beta (train/grpo.py check_recipe)
    Method("grpo", "full", "sft", frozenset({"replay"}), _grpo, cut_to_max_length=False),
)}


def row_kind_for(method: str) -> RowKind:
    """The row shape a recipe method trains on."""
    return method_facts(method).rows


def method_facts(name: str) -> Method:
    """The table entry of method ``name`` (a recipe's ``method``, already validated by the spec)."""
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"no update method '{name}' in loopgate/train/methods.py (it has {', '.join(METHODS)})") \
            from None


__all__ = ["METHODS", "Method", "Remedy", "RowKind", "TrainInputs", "Trained", "method_facts", "row_kind_for"]
