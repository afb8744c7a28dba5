"""What every update method returns, so ``run_update`` can write provenance the same way for all of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from loopgate.train.loop import FitStats


@dataclass
class Trained:
    """The artifact a method wrote (a full model dir or a PEFT adapter dir) and the loop's measurements."""

    kind: Literal["full", "adapter"]
    stats: FitStats
    n_params: int  # all parameters the forward/backward pass runs through (for the 6·N·tokens FLOPs estimate)
    placement: dict[str, str] = field(default_factory=dict)  # device, dtype, precision scheme (Precision.record)
