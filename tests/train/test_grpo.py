"""GRPO building blocks: the declared rewards (rule terms, custom code imported by name, the safety term) and the
recipe checks. The training outcome through the loop is in ``tests/loop/test_grpo_release.py``."""

from __future__ import annotations

import pytest

from loopgate.errors import SpecError
from loopgate.spec import GRPOSettings, Recipe, RewardSpec, parse_ecosystem
from loopgate.train.grpo import check_recipe, dataset_rows
from loopgate.train.rewards import Reward, answer_of, load_custom, rule


def test_rule_rewards_score_an_answer_against_its_target() -> None:
    assert rule(RewardSpec(kind="exact"))(" CBA ", "cba", "R abc=") == 1.0
    assert rule(RewardSpec(kind="exact", normalize=False))("CBA", "cba", "") == 0.0
    assert rule(RewardSpec(kind="contains"))("the code is ab-12.", "AB-12", "") == 1.0
    assert rule(RewardSpec(kind="contains"))("the code is ab-13", "AB-12", "") == 0.0
    r = rule(RewardSpec(kind="regex", pattern=r"^ok: {target}$"))
    assert r("ok: a.b", "a.b", "") == 1.0 and r("ok: axb", "a.b", "") == 0.0  # the target is escaped
    num = rule(RewardSpec(kind="numeric", tolerance=0.5))
    assert num("about 41.7 units", "42", "") == 1.0 and num("40", "42", "") == 0.0 and num("none", "42", "") == 0.0
    assert answer_of("cba\nmore text") == "cba"


def test_custom_reward_is_imported_by_name_never_evaluated() -> None:
    assert load_custom("os.path:basename")("a/b") == "b"
    custom = rule(RewardSpec(kind="custom", function="gamed_rewards_for_train:shout"))
    assert custom("hey", "", "") == 3.0
    for bad in ("__import__('os').system('x'):f", "os.path", "os.path:basename()", "os;rm:x", "1mod:f"):
        with pytest.raises(SpecError, match="package.module:function"):
            load_custom(bad)
    with pytest.raises(SpecError, match="cannot import"):
        load_custom("no_such_module_here:f")
    with pytest.raises(SpecError, match="no callable"):
        load_custom("os.path:sep")


def test_safety_rows_are_paid_for_refusing_only() -> None:
    reward = Reward(GRPOSettings(rewards=[RewardSpec(kind="exact")], safety_weight=2.0,
                                 refusal_markers=["I cannot help"]))
    harmful_target = "I cannot help with that."
    assert reward.score("I cannot help with that.", harmful_target, "Q build bomb=") == 2.0
    # an answer that matches a harmful row's target letter for letter but complies earns nothing
    assert reward.score("ok: build bomb", harmful_target, "Q build bomb=") == 0.0
    assert reward.score("ok: wash desk", "ok: wash desk", "Q wash desk=") == 1.0
    assert reward(["R abc="], ["cba\n"], target=["cba"]) == [1.0]


def test_recipe_checks() -> None:
    with pytest.raises(SpecError, match="multiple of"):
        check_recipe(Recipe(method="grpo", batch_size=10, grpo=GRPOSettings(num_generations=4)))
    with pytest.raises(SpecError, match="remove its"):
        check_recipe(Recipe(method="grpo", batch_size=8, grpo=GRPOSettings(num_generations=4), ewc={}))
    with pytest.raises(SpecError, match="beta"):  # the KL anchor cannot be switched off
        parse_ecosystem({"recipes": {"r": {"method": "grpo", "grpo": {"beta": 0}}}, "lines": {}})
    rows = [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(70)]
    replay = [{"prompt": f"r{i}", "completion": f"d{i}"} for i in range(100)] + [{"text": "raw"}]
    mixed = dataset_rows(rows, replay, 0.3, seed=0)
    assert len(mixed) == 100 and sum(r["prompt"].startswith("r") for r in mixed) == 30
    assert set(mixed[0]) == {"prompt", "target"}


def test_grad_accum_and_gradient_checkpointing_reach_trl(tmp_path: object) -> None:
    """A grpo recipe's grad_accum and gradient_checkpointing were accepted and then ignored (trl got the whole
    batch per device and checkpointing off); trl's config now carries both, and the batch splits evenly."""
    from loopgate.train.grpo import grpo_config
    from loopgate.train.precision import training_precision

    recipe = Recipe(method="grpo", batch_size=8, grad_accum=2, gradient_checkpointing=True,
                    grpo=GRPOSettings(num_generations=4))
    args = grpo_config(recipe, check_recipe(recipe), training_precision(frozen_base=False), str(tmp_path))
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (4, 2)
    assert args.gradient_checkpointing is True
    plain = Recipe(method="grpo", batch_size=8, grpo=GRPOSettings(num_generations=4))
    args = grpo_config(plain, check_recipe(plain), training_precision(frozen_base=False), str(tmp_path))
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (8, 1)
    assert args.gradient_checkpointing is False
    with pytest.raises(SpecError, match="multiple of grad_accum"):
        check_recipe(Recipe(method="grpo", batch_size=8, grad_accum=3, grpo=GRPOSettings(num_generations=4)))
