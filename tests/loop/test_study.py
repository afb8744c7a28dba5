"""loop/study.py: the search space of ``loopgate tune`` around a recipe, and the recipe at a trial's point."""

from __future__ import annotations

from typing import Any

from loopgate.loop.study import apply_params, recipe_params, search_space


def test_the_recipe_sits_inside_its_own_search_space(workspace: Any) -> None:
    recipe = workspace.eco.recipes["domain-sft"]
    space, point = search_space(recipe), recipe_params(recipe)
    assert set(point) == set(space)
    kind, low, high = space["lr"]  # type: ignore[misc]
    assert kind == "log" and low < recipe.lr < high
    assert recipe_params(apply_params(recipe, point)) == point
    doubled = apply_params(recipe, {**point, "steps": recipe.steps * 2})
    assert doubled.steps == recipe.steps * 2 and doubled.lr == recipe.lr
