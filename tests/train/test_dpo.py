"""A DPO update (trl's DPOTrainer on CPU) raises the chosen-over-rejected margin on held-out pairs."""

from __future__ import annotations

from pathlib import Path

from seed import SEED
from train_tasks import HELD_OUT, TASKS, TRAIN, completion_logprob, prompt, write_jsonl

from loopgate.spec import DPOSettings, Recipe
from loopgate.train import run_update


def pairs(ws: list[str]) -> list[dict[str, str]]:
    # prefer sorting the letters over the reversal v1 already knows
    return [{"prompt": prompt("B", w), "chosen": TASKS["B"][1](w), "rejected": TASKS["A"][1](w)}
            for w in ws if TASKS["B"][1](w) != TASKS["A"][1](w)]


def margins(model_dir: Path, rows: list[dict[str, str]]) -> list[float]:
    ps = [r["prompt"] for r in rows]
    chosen = completion_logprob(model_dir, ps, [r["chosen"] for r in rows])
    rejected = completion_logprob(model_dir, ps, [r["rejected"] for r in rows])
    return [c - r for c, r in zip(chosen, rejected, strict=True)]


def test_dpo_raises_preference_margin_on_held_out_pairs(v1: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs(TRAIN[:400]))
    held_out = pairs(HELD_OUT)
    recipe = Recipe(method="dpo", steps=100, batch_size=16, lr=2e-3, max_length=32, seed=SEED,
                    dpo=DPOSettings(beta=0.1, sft_weight=1.0))
    result = run_update(v1, recipe, [data], tmp_path / "dpo")
    before, after = margins(v1, held_out), margins(result.out_dir, held_out)
    mean_before, mean_after = sum(before) / len(before), sum(after) / len(after)
    won_before, won = sum(m > 0 for m in before) / len(before), sum(m > 0 for m in after) / len(after)
    print(f"margin before {mean_before:.2f} after {mean_after:.2f}; pairs preferred {won_before:.2f} -> {won:.2f}")
    assert result.kind == "full" and result.provenance["tokens_seen"] > 0
    # seeds 0-5 measured: mean margin -39…-6 → +6.5…+16 nats, pairs preferred ≤ 5 % → 82-96 %
    # (30 steps left the mean margin at -1.0…+2.4 for seeds 0-2: a sign test inside the spread between seeds)
    assert mean_after >= mean_before + 10.0, "the preference margin moves a long way towards the chosen answers"
    assert mean_after >= 2.0, "on average the chosen answer is now preferred by a clear margin"
    assert won >= won_before + 0.5, "most held-out pairs flip to the chosen answer"
