"""Forgetting is real, replay and the KL/EWC regularisers reduce it (measured on held-out words)."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_tasks import SFT_B, accuracy, answer_nll

from loopgate.errors import DataError
from loopgate.spec import EWCSettings, KLSettings
from loopgate.train import run_update


def test_full_finetune_forgets_and_replay_forgets_less(v1: Path, child_full: Path, child_replay: Path) -> None:
    a_before, b_v1 = accuracy(v1, "A"), accuracy(v1, "B")
    a_full, b_full = accuracy(child_full, "A"), accuracy(child_full, "B")
    a_replay, b_replay = accuracy(child_replay, "A"), accuracy(child_replay, "B")
    print(f"A: v1 {a_before:.2f} full {a_full:.2f} replay {a_replay:.2f}; B: full {b_full:.2f} replay {b_replay:.2f}")
    assert a_before >= 0.8, "the foundation must know the old task for forgetting to mean anything"
    # measured: A .92 → .05 (full) vs .71 (replay); B .66 (full) vs .21 (replay) — on a 0.14 M-parameter model
    # replay trades plasticity for stability, as FIELD-NOTES found at the 1 M size
    assert b_full >= 0.5 and b_replay >= b_v1 + 0.1, "both updates must learn the new task"
    assert a_full <= a_before - 0.5, "a full fine-tune on a new task forgets the old one"
    assert a_replay >= a_full + 0.4, "50 % replay of the old data forgets measurably less"


@pytest.mark.parametrize("regularizer", ["kl", "ewc"])
def test_regularizer_keeps_old_task_closer(regularizer: str, v1: Path, data_dir: dict[str, Path],
                                           tmp_path: Path) -> None:
    short = SFT_B.model_copy(update={"steps": 40})
    plain_dir = tmp_path / "plain"
    run_update(v1, short, [data_dir["B"]], plain_dir)
    reg = {"kl": {"kl": KLSettings(weight=2.0)}, "ewc": {"ewc": EWCSettings(weight=50000.0, fisher_batches=4)}}
    reg_dir = tmp_path / regularizer
    result = run_update(v1, short.model_copy(update=reg[regularizer]), [data_dir["B"]], reg_dir,
                        retention=[data_dir["A"]])
    nll_v1, nll_plain, nll_reg = answer_nll(v1, "A"), answer_nll(plain_dir, "A"), answer_nll(reg_dir, "A")
    print(f"{regularizer}: A nll v1 {nll_v1:.3f} plain {nll_plain:.3f} regularised {nll_reg:.3f}")
    assert nll_plain > nll_v1 + 1.0, "the plain update must disturb the old task for the comparison to mean anything"
    assert nll_reg < nll_v1 + 0.5 * (nll_plain - nll_v1), "the regulariser must keep at least half the old task"
    assert result.provenance["retention_sha256"], "retention data is part of the provenance"


def test_regularizer_without_retention_data_is_refused(v1: Path, data_dir: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(DataError, match="retention"):
        run_update(v1, SFT_B.model_copy(update={"kl": KLSettings()}), [data_dir["B"]], tmp_path / "x")
