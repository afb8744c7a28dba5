"""Plasticity measures that move on the tiny family, and the remedies that act on them (real training)."""

from __future__ import annotations

import copy
import random

import pytest
import torch
from seed import SEED

from loopgate.errors import SpecError
from loopgate.evaluate.plasticity import dormant_ratio, plasticity_profile
from loopgate.gates.plasticity import remedy
from loopgate.models import TinyConfig, build_tiny_model, set_threads
from loopgate.spec import Recipe
from loopgate.train.loop import fit
from loopgate.train.remedies import redo, shrink_perturb, unit_scores

SMALL = TinyConfig(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=256, seed=SEED)
_rng = random.Random(1)
WORDS = ["".join(_rng.choice("abcdefghijkl") for _ in range(4)) for _ in range(1500)]
SKILLS = {"R": lambda w: w[::-1], "S": lambda w: "".join(sorted(w)), "L": lambda w: w[1:] + w[:1]}


def rows(skill: str) -> list[dict[str, str]]:
    return [{"prompt": f"{skill} {w}=", "completion": SKILLS[skill](w) + "\n"} for w in WORDS]


def harsh(steps: int = 150) -> Recipe:
    """Full updates at a high learning rate and no replay: what erodes plasticity."""
    return Recipe(method="sft", steps=steps, batch_size=32, lr=1e-2, max_length=32, seed=SEED)


@pytest.fixture(scope="module")
def fresh_and_eroded():  # type: ignore[no-untyped-def]
    set_threads()
    fresh, tok = build_tiny_model(SMALL)
    eroded = copy.deepcopy(fresh)
    for skill in ("R", "S"):
        fit(eroded, tok, harsh(), rows(skill))
    return fresh, eroded, tok


def test_dormancy_and_effective_rank_move_with_harsh_updates(fresh_and_eroded) -> None:  # type: ignore[no-untyped-def]
    fresh, eroded, tok = fresh_and_eroded
    before = plasticity_profile(fresh, tok, probe_steps=30, seed=SEED)
    after = plasticity_profile(eroded, tok, probe_steps=30, seed=SEED)
    # measured (seeds 0-1): fresh 0.000 dormant, effective rank 43; after two harsh updates 0.06-0.15 dormant,
    # effective rank 4-18, and the probe ends 3-4 nats higher (headroom below 0.1)
    assert before["dormant_ratio"] == 0.0
    assert after["dormant_ratio"] >= 0.02
    assert after["effective_rank"] < 0.6 * before["effective_rank"]
    assert after["probe_improvement"] < 0.5 * before["probe_improvement"]
    # the paper's τ = 0.025 saw none of this on SwiGLU units: the reason τ is calibrated
    assert dormant_ratio(eroded, tok, tau=0.025) < after["dormant_ratio"]


def test_shrink_and_perturb_restores_learning_on_the_probe(fresh_and_eroded) -> None:  # type: ignore[no-untyped-def]
    _, eroded, tok = fresh_and_eroded
    gentle = Recipe(method="sft", steps=60, batch_size=32, lr=3e-3, max_length=32, seed=SEED)
    plain, remedied = copy.deepcopy(eroded), copy.deepcopy(eroded)
    fit(plain, tok, gentle, rows("L"))
    fit(remedied, tok, gentle.model_copy(update={"shrink": 0.5, "noise": 0.5}), rows("L"))
    p = plasticity_profile(plain, tok, probe_steps=30, seed=SEED)
    r = plasticity_profile(remedied, tok, probe_steps=30, seed=SEED)
    # measured seed 0: probe loss 8.2 plain, 5.1 after shrink-and-perturb; weight norm 66 vs 38
    assert r["probe_loss_end"] < p["probe_loss_end"] - 1.0
    assert r["weight_norm"] < 0.8 * p["weight_norm"]


def test_redo_reinitialises_exactly_the_dormant_units(fresh_and_eroded) -> None:  # type: ignore[no-untyped-def]
    _, eroded, tok = fresh_and_eroded
    model = copy.deepcopy(eroded)
    batch = tok([r["prompt"] + r["completion"] for r in rows("R")[:32]], return_tensors="pt", padding=True)
    scores = unit_scores(model, dict(batch))
    dormant = [(s <= 0.1) for s in scores]
    assert sum(int(d.sum()) for d in dormant) > 0
    before = {k: v.clone() for k, v in model.state_dict().items()}
    n = redo(model, dict(batch), 0.1, None, torch.Generator().manual_seed(SEED))
    assert n == sum(int(d.sum()) for d in dormant)
    for i, (layer, d) in enumerate(zip(model.model.layers, dormant, strict=True)):
        down = layer.mlp.down_proj.weight
        assert torch.all(down[:, d] == 0)  # outgoing weights zeroed: the output does not jump
        assert torch.equal(down[:, ~d], before[f"model.layers.{i}.mlp.down_proj.weight"][:, ~d])
        up = layer.mlp.up_proj.weight
        assert not torch.equal(up[d], before[f"model.layers.{i}.mlp.up_proj.weight"][d])
    after = unit_scores(model, dict(batch))
    assert sum(int((s <= 0.1).sum()) for s in after) < n  # re-drawn units fire again


def test_redo_runs_inside_the_training_loop(fresh_and_eroded) -> None:  # type: ignore[no-untyped-def]
    _, eroded, tok = fresh_and_eroded
    model = copy.deepcopy(eroded)
    stats = fit(model, tok, harsh(30).model_copy(update={"redo_every": 10, "lr": 3e-3}), rows("L"))
    assert stats.final_loss == stats.final_loss  # trained to a number, not NaN, with units re-drawn mid-run


def test_remedies_refuse_a_lora_model() -> None:
    from peft import LoraConfig, get_peft_model

    model, _ = build_tiny_model(SMALL)
    peft = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj"]))
    with pytest.raises(SpecError, match="full-weight method"):
        shrink_perturb(peft, 0.5, 0.5, SEED)


@pytest.mark.parametrize(("method", "why"), [("lora", "keeps frozen"), ("dpo", "does not touch"),
                                             ("grpo", "does not touch")])
def test_a_recipe_refuses_a_remedy_its_method_cannot_run(method: str, why: str) -> None:
    """Refused when the spec is read, not steps into the run (ReDo on LoRA) or silently ignored (DPO, GRPO)."""
    from pydantic import ValidationError

    from loopgate.spec import Recipe

    for remedy_option in ({"redo_every": 10}, {"shrink": 0.8, "noise": 0.1}):
        with pytest.raises(ValidationError, match=f"works with method 'sft' or 'pretrain' only.*{why}"):
            Recipe(method=method, **remedy_option)  # type: ignore[arg-type]
    assert Recipe(method="sft", redo_every=10, shrink=0.8).redo_every == 10


def test_the_gate_names_the_remedy_the_figures_point_at() -> None:
    ref = {"dormant_ratio": 0.0, "weight_norm": 20.0}
    assert remedy({"dormant_ratio": 0.2, "weight_norm": 21.0}, ref).startswith("ReDo")
    assert "redo_every" in remedy({"dormant_ratio": 0.2}, ref)
    grown = remedy({"dormant_ratio": 0.01, "weight_norm": 60.0}, ref)
    assert grown.startswith("shrink-and-perturb") and "3.0×" in grown
    assert "shrink" in remedy({"dormant_ratio": 0.0, "weight_norm": 21.0}, ref)
