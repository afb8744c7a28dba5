"""Forgetting is real, replay and the KL/EWC regularisers reduce it (measured on held-out words).

Every effect is asserted relative to the same model without the remedy, with thresholds far from what seeds 0-5
measure (figures in the comments), because tiny-model outcomes move between machines.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from train_tasks import SFT_B, accuracy, answer_nll

from loopgate.errors import DataError
from loopgate.models import load_model
from loopgate.spec import EWCSettings, KLSettings, Recipe
from loopgate.train import load_rows, run_update
from loopgate.train.data import tokenize_rows
from loopgate.train.regularizers import EWC

SHORT = SFT_B.model_copy(update={"steps": 40})  # long enough to wreck the old task, short enough to be cheap


def test_full_finetune_forgets_and_replay_forgets_less(v1: Path, child_full: Path, child_replay: Path) -> None:
    a_before, b_v1 = accuracy(v1, "A"), accuracy(v1, "B")
    a_full, b_full = accuracy(child_full, "A"), accuracy(child_full, "B")
    a_replay, b_replay = accuracy(child_replay, "A"), accuracy(child_replay, "B")
    nll_b_v1, nll_b_replay = answer_nll(v1, "B"), answer_nll(child_replay, "B")
    print(f"A: v1 {a_before:.2f} full {a_full:.2f} replay {a_replay:.2f}; B: v1 {b_v1:.2f} full {b_full:.2f} "
          f"replay {b_replay:.2f}; B nll: v1 {nll_b_v1:.2f} replay {nll_b_replay:.2f}")
    # seeds 0-5 measured: A v1 .94-1.00, full .02-.07, replay .81-.94; B v1 ≤ .07, full .58-.72;
    # B nll v1 37-46, replay 2.8-4.9 — replay trades plasticity for stability, as FIELD-NOTES found at the 1 M size
    assert a_before >= 0.8, "the foundation must know the old task for forgetting to mean anything"
    assert b_full >= b_v1 + 0.3, "the full fine-tune learns the new task"
    assert nll_b_replay <= 0.25 * nll_b_v1, "the replay update learns the new task too (half its batch is new data)"
    assert a_full <= a_before - 0.5, "a full fine-tune on a new task forgets the old one"
    assert a_replay >= a_full + 0.4, "50 % replay of the old data forgets far less"


@pytest.fixture(scope="module")
def plain(v1: Path, data_dir: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The unregularised short update both regularisers are compared against."""
    return run_update(v1, SHORT, [data_dir["B"]], tmp_path_factory.mktemp("plain") / "model").out_dir


def ewc_weight(parent: Path, recipe: Recipe, retention: Path, scale: float) -> float:
    """``scale`` divided by the mean diagonal Fisher that ``run_update`` will estimate for ``recipe``.

    A fixed ``ewc.weight`` means nothing across parents: the empirical Fisher shrinks with the parent's loss on
    the retention rows, and over seeds 0-5 of the same v1 recipe its mean spanned 3e-7 to 2e-3, so one weight gave
    anything from full protection to none. Scaled to the Fisher, one setting behaves the same for every seed.
    """
    assert recipe.ewc is not None
    loaded = load_model(parent)
    examples = tokenize_rows(load_rows(retention), loaded.tokenizer, recipe.max_length)
    # the same rows, batch size and seed as the training loop's EWC, so the Fisher is the one it will use
    ewc = EWC(loaded.model, examples, recipe.ewc, batch_size=max(1, recipe.batch_size // 4), seed=recipe.seed,
              pad_id=loaded.tokenizer.pad_token_id)
    total = sum(float(f.sum()) for f in ewc.fisher.values())
    return scale / (total / sum(f.numel() for f in ewc.fisher.values()))


@pytest.mark.parametrize("regularizer", ["kl", "ewc"])
def test_regularizer_keeps_old_task_closer(regularizer: str, v1: Path, plain: Path, data_dir: dict[str, Path],
                                           tmp_path: Path) -> None:
    if regularizer == "kl":
        recipe = SHORT.model_copy(update={"kl": KLSettings(weight=2.0)})
    else:
        recipe = SHORT.model_copy(update={"ewc": EWCSettings(fisher_batches=64)})
        weight = ewc_weight(v1, recipe, data_dir["A"], scale=1000.0)
        recipe = recipe.model_copy(update={"ewc": EWCSettings(weight=weight, fisher_batches=64)})
    reg_dir = tmp_path / regularizer
    result = run_update(v1, recipe, [data_dir["B"]], reg_dir, retention=[data_dir["A"]])
    a_v1, a_plain, a_reg = answer_nll(v1, "A"), answer_nll(plain, "A"), answer_nll(reg_dir, "A")
    b_v1, b_plain, b_reg = answer_nll(v1, "B"), answer_nll(plain, "B"), answer_nll(reg_dir, "B")
    forgotten = (a_reg - a_v1) / (a_plain - a_v1)  # share of the plain update's damage to A that remains
    learned = (b_v1 - b_reg) / (b_v1 - b_plain)  # share of the plain update's progress on B that remains
    print(f"{regularizer}: A nll v1 {a_v1:.2f} plain {a_plain:.2f} regularised {a_reg:.2f} "
          f"(forgotten {forgotten:.2f}); B nll v1 {b_v1:.2f} plain {b_plain:.2f} regularised {b_reg:.2f} "
          f"(learned {learned:.2f})")
    # seeds 0-5 measured: kl forgotten .02-.06, learned .91-.92; ewc forgotten .00-.20, learned .19-.65 (ewc's
    # scale 1000 is where both hold with room: at 300-700 one seed or another forgot .3-.5)
    assert a_plain > a_v1 + 5.0, "the plain update must wreck the old task for the comparison to mean anything"
    assert forgotten <= 0.5, "the regulariser must keep at least half of what the plain update destroys"
    assert learned >= 0.05, "the regularised update still learns the new task (a frozen model would pass the above)"
    assert result.provenance["retention_sha256"], "retention data is part of the provenance"


def test_regularizer_without_retention_data_is_refused(v1: Path, data_dir: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(DataError, match="retention"):
        run_update(v1, SFT_B.model_copy(update={"kl": KLSettings()}), [data_dir["B"]], tmp_path / "x")
