"""What a training function takes and returns: one shape for every update method (the table is ``methods.py``).

Torch-free, and imported by the training modules themselves, so the table can import them lazily without a cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from loopgate.spec import Recipe

RowKind = Literal["sft", "dpo", "text"]  # the row shapes of ``train/data.py``: prompt/completion, preference, text


@dataclass
class FitStats:
    """What the loop measured: the final task loss (mean of the last steps), tokens seen and their rate."""

    final_loss: float
    tokens_seen: int
    tokens_per_s: float
    train_s: float
    replay_rows_per_batch: int


@dataclass
class Trained:
    """The artifact a method wrote (a full model dir or a PEFT adapter dir) and the loop's measurements."""

    kind: Literal["full", "adapter"]
    stats: FitStats
    n_params: int  # all parameters the forward/backward pass runs through (for the 6·N·tokens FLOPs estimate)
    placement: dict[str, str] = field(default_factory=dict)  # device, dtype, precision scheme (Precision.record)


@dataclass(frozen=True)
class TrainInputs:
    """Everything a training function gets: one shape for every method, so ``run_update`` calls them alike."""

    parent_dir: Path | None  # the full model trained from (``None``: a fresh tiny model)
    adapter_dir: Path | None  # an adapter the start point holds (continued, or merged in memory)
    recipe: Recipe
    rows: Sequence[dict[str, Any]]
    out_dir: Path
    replay_rows: Sequence[dict[str, Any]] = ()
    retention_rows: Sequence[dict[str, Any]] = ()
    progress: bool = False

    def full_parent(self) -> Any:
        """What a full update starts from: the parent folder, or (from an adapter version) base + adapter, merged
        in memory when loaded."""
        from loopgate.models import ModelRef

        if self.parent_dir is not None and self.adapter_dir is not None:
            return ModelRef(self.parent_dir, self.adapter_dir)
        return self.parent_dir

    def parent(self) -> Path:
        assert self.parent_dir is not None  # run_update refuses a method that needs a parent without one
        return self.parent_dir
