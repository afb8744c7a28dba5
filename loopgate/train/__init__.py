"""Update methods (pretrain, SFT, LoRA, replay, KL/EWC, DPO) and capability transfer.

``run_update`` is the one entry point of the loop's update step; ``transfer`` re-derives a child on its
parent's new version.
"""

from loopgate.train.data import load_rows
from loopgate.train.transfer import (
    TransferAttempt,
    TransferCandidate,
    TransferResult,
    plan_strategies,
    shapes_match,
    transfer,
    transfer_candidate,
)
from loopgate.train.update import UpdateResult, run_update

__all__ = [
    "TransferAttempt",
    "TransferCandidate",
    "TransferResult",
    "UpdateResult",
    "load_rows",
    "plan_strategies",
    "run_update",
    "shapes_match",
    "transfer",
    "transfer_candidate",
]
