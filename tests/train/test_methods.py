"""The table of update methods is the one place methods differ: every recipe method has an entry, and every entry
is a method a recipe can name (the spec, the lowest layer, keeps its own list of names)."""

from __future__ import annotations

import typing

from loopgate.spec import Recipe
from loopgate.train.methods import METHODS, method_facts, row_kind_for


def test_the_table_and_the_recipe_name_the_same_methods() -> None:
    assert set(typing.get_args(Recipe.model_fields["method"].annotation)) == set(METHODS)


def test_the_facts_are_what_each_trainer_does() -> None:
    assert [m for m in METHODS if not METHODS[m].needs_parent] == ["pretrain", "sft"]
    assert [m for m in METHODS if METHODS[m].continues_adapter] == ["lora", "dpo"]
    assert [m for m in METHODS if METHODS[m].tunable] == ["sft", "lora"]
    assert {m: row_kind_for(m) for m in METHODS} == {"pretrain": "text", "sft": "sft", "lora": "sft", "dpo": "dpo",
                                                     "grpo": "sft"}
    assert method_facts("lora").makes_adapter and not method_facts("dpo").makes_adapter
